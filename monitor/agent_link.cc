#include "autoscale/rpc/monitor_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "glog/logging.h"

namespace autoscale::rpc {

struct MonitorService::Session {
  grpc::ServerContext* context;
  grpc::ServerReaderWriter<api::MonitorMessage, api::AgentMessage>* stream;
  absl::Notification stop;
  absl::Mutex write_mu;
  // The stream may be written to only until its handler returns.
  bool open ABSL_GUARDED_BY(write_mu) = true;
  // Monitor-initiated messages use odd ids.
  uint64_t next_id ABSL_GUARDED_BY(write_mu) = 1;

  // Writes `m` (with a fresh odd id when `own_id`); false once the stream is closed.
  bool Write(api::MonitorMessage m, bool own_id = false) {
    absl::MutexLock lock(&write_mu);
    if (!open) return false;
    if (own_id) {
      m.set_id(next_id);
      next_id += 2;
    }
    return stream->Write(m);
  }
};

namespace {

api::MonitorMessage ErrorReply(uint64_t id, api::Error::Kind kind, std::string message) {
  api::MonitorMessage m;
  m.set_id(id);
  m.mutable_error()->set_kind(kind);
  m.mutable_error()->set_message(std::move(message));
  return m;
}

}  // namespace

MonitorService::MonitorService(monitor::Monitor& monitor, const monitor::MetricsReader& metrics,
                               MonitorServiceOptions options)
    : monitor_(monitor), metrics_(metrics), options_(options) {}

MonitorService::~MonitorService() { Disconnect(); }

bool MonitorService::connected() const {
  absl::MutexLock lock(&mu_);
  return session_ != nullptr;
}

void MonitorService::Disconnect() {
  absl::MutexLock lock(&mu_);
  if (session_) session_->context->TryCancel();
}

bool MonitorService::SendUpscaleRequest(int64_t usage_bytes, int64_t threshold_bytes) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    session = session_;
  }
  if (!session) return false;
  api::MonitorMessage m;
  m.mutable_upscale_request()->set_usage_bytes(usage_bytes);
  m.mutable_upscale_request()->set_threshold_bytes(threshold_bytes);
  return session->Write(std::move(m), /*own_id=*/true);
}

grpc::Status MonitorService::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<api::MonitorMessage, api::AgentMessage>* stream) {
  auto session = std::make_shared<Session>();
  session->context = context;
  session->stream = stream;

  // The handshake: a Hello with a version range that includes ours.
  api::AgentMessage hello;
  if (!stream->Read(&hello)) return grpc::Status::CANCELLED;
  if (!hello.has_hello()) {
    session->Write(ErrorReply(hello.id(), api::Error::INVALID_MESSAGE,
                              "expected a Hello as the first message"));
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "expected a Hello first");
  }
  const int ours = api::PROTOCOL_VERSION_1;
  if (hello.hello().min_version() > ours || hello.hello().max_version() < ours) {
    std::string why =
        absl::StrCat("no common protocol version: agent speaks ", hello.hello().min_version(), "..",
                     hello.hello().max_version(), ", monitor speaks ", ours);
    session->Write(ErrorReply(hello.id(), api::Error::INVALID_MESSAGE, why));
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
  }
  {
    // One agent at a time: the newest wins.
    absl::MutexLock lock(&mu_);
    if (session_) {
      LOG(INFO) << "monitor: a new agent connected (" << context->peer()
                << "); ending the previous stream";
      session_->context->TryCancel();
    }
    session_ = session;
  }
  api::MonitorMessage reply;
  reply.set_id(hello.id());
  reply.mutable_hello_reply()->set_version(api::PROTOCOL_VERSION_1);
  session->Write(reply);
  LOG(INFO) << "monitor: agent connected from " << context->peer();

  std::thread metrics([this, session] {
    do {
      absl::StatusOr<api::Metrics> m = metrics_.Read();
      if (!m.ok()) {
        LOG_EVERY_N(WARNING, 30) << "monitor: reading metrics: " << m.status();
        continue;
      }
      api::MonitorMessage msg;
      *msg.mutable_metrics() = *std::move(m);
      session->Write(std::move(msg), /*own_id=*/true);
    } while (!session->stop.WaitForNotificationWithTimeout(options_.metrics_interval));
  });

  api::AgentMessage message;
  while (stream->Read(&message)) Handle(*session, message);

  session->stop.Notify();
  metrics.join();
  {
    absl::MutexLock lock(&session->write_mu);
    session->open = false;
  }
  {
    absl::MutexLock lock(&mu_);
    if (session_ == session) session_.reset();
  }
  LOG(INFO) << "monitor: agent " << context->peer() << " disconnected";
  return grpc::Status::OK;
}

void MonitorService::Handle(Session& session, const api::AgentMessage& message) {
  api::MonitorMessage reply;
  reply.set_id(message.id());
  switch (message.kind_case()) {
    case api::AgentMessage::kHealthCheck:
      reply.mutable_health_check();
      break;
    case api::AgentMessage::kDownscaleRequest: {
      int64_t target = message.downscale_request().target().memory_bytes();
      if (target <= 0) {
        reply = ErrorReply(message.id(), api::Error::INVALID_MESSAGE,
                           absl::StrCat("downscale target memory must be > 0, got ", target));
        break;
      }
      absl::StatusOr<monitor::Monitor::DownscaleDecision> d = monitor_.TryDownscale(target);
      if (!d.ok()) {
        reply = ErrorReply(message.id(), api::Error::INTERNAL, std::string(d.status().message()));
        break;
      }
      LOG(INFO) << "monitor: downscale to " << target / (1 << 20) << " MiB "
                << (d->ok ? "approved" : "denied") << ": " << d->status;
      reply.mutable_downscale_result()->set_ok(d->ok);
      reply.mutable_downscale_result()->set_status(d->status);
      break;
    }
    case api::AgentMessage::kUpscaleNotification: {
      int64_t granted = message.upscale_notification().granted().memory_bytes();
      if (granted <= 0) {
        reply = ErrorReply(message.id(), api::Error::INVALID_MESSAGE,
                           absl::StrCat("granted memory must be > 0, got ", granted));
        break;
      }
      absl::Status s = monitor_.NotifyUpscale(granted);
      if (!s.ok()) {
        reply = ErrorReply(message.id(), api::Error::INTERNAL, std::string(s.message()));
        break;
      }
      reply.mutable_upscale_confirmation();
      break;
    }
    case api::AgentMessage::kHello:
      reply = ErrorReply(message.id(), api::Error::INVALID_MESSAGE, "Hello sent twice");
      break;
    case api::AgentMessage::KIND_NOT_SET:
      reply = ErrorReply(message.id(), api::Error::INVALID_MESSAGE,
                         "message without a kind (newer agent?)");
      break;
  }
  session.Write(std::move(reply));
}

}  // namespace autoscale::rpc
