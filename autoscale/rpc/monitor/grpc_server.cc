#include "autoscale/rpc/monitor/grpc_server.h"

#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "autoscale/api/monitor.grpc.pb.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/internal/grpc_server.h"
#include "autoscale/rpc/monitor/internal/protocol.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::monitor {
namespace {

using Stream = grpc::ServerReaderWriter<api::v1::MonitorMessage, api::v1::AgentMessage>;

// One agent's stream, for the replies and for what the monitor sends on its own.
class GrpcAgentStream final : public AgentStream {
 public:
  GrpcAgentStream(grpc::ServerContext* context, Stream* stream)
      : context_(context), stream_(stream) {}

  bool SendMetrics(const api::v1::Metrics& metrics) override {
    api::v1::MonitorMessage m;
    *m.mutable_metrics() = metrics;
    return Write(std::move(m), /*own_id=*/true);
  }
  bool SendUpscaleRequest(const api::v1::UpscaleRequest& request) override {
    api::v1::MonitorMessage m;
    *m.mutable_upscale_request() = request;
    return Write(std::move(m), /*own_id=*/true);
  }
  void Close() override {
    absl::MutexLock lock(&mu_);
    if (open_) context_->TryCancel();
  }

  // Writes `m` (with a fresh odd id when `own_id`); false once the stream is closed.
  bool Write(api::v1::MonitorMessage m, bool own_id = false) {
    absl::MutexLock lock(&mu_);
    if (!open_) return false;
    if (own_id) {
      m.set_id(next_id_);
      next_id_ += 2;
    }
    return stream_->Write(m);
  }
  // The handler is about to return: the stream and the context go away.
  void Shut() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }

 private:
  grpc::ServerContext* const context_;
  Stream* const stream_;
  // Serializes writes, and guards the stream's use against the handler's return.
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  // Monitor-initiated messages use odd ids.
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

class Service final : public api::v1::Monitor::Service {
 public:
  Service(MonitorService& monitor, absl::Duration hello_timeout)
      : monitor_(monitor), hello_timeout_(hello_timeout) {}

  grpc::Status Connect(grpc::ServerContext* context, Stream* stream) override {
    auto agent = std::make_shared<GrpcAgentStream>(context, stream);
    // The handshake: a Hello with a version range that includes ours, within hello_timeout_: a
    // peer that connects and says nothing would otherwise hold a server thread for good.
    api::v1::AgentMessage hello;
    bool greeted;
    {
      absl::Notification read;
      std::thread watchdog([&] {
        if (!read.WaitForNotificationWithTimeout(hello_timeout_)) context->TryCancel();
      });
      greeted = stream->Read(&hello);
      read.Notify();
      watchdog.join();
    }
    if (!greeted || context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED,
                          absl::StrCat("no hello from ", context->peer(), " within ",
                                       absl::FormatDuration(hello_timeout_)));
    }
    if (absl::Status s = internal::CheckHello(hello); !s.ok()) {
      agent->Write(internal::ErrorReply(hello.id(), api::v1::Error::INVALID_MESSAGE,
                                        std::string(s.message())));
      agent->Shut();
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(s.message()));
    }
    const std::string identity = PeerIdentity(*context);
    if (absl::Status s = monitor_.Admit(identity, hello.hello().agent_token()); !s.ok()) {
      LOG(WARNING) << "monitor: refused the agent at " << context->peer() << ": " << s;
      agent->Write(internal::ErrorReply(hello.id(), api::v1::Error::PERMISSION_DENIED,
                                        std::string(s.message())));
      agent->Shut();
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(s.message()));
    }
    agent->Write(internal::HelloReply(hello.id()));
    const std::string peer =
        identity.empty() ? context->peer() : absl::StrCat(identity, " at ", context->peer());
    std::unique_ptr<AgentSession> session = monitor_.Connect(agent, peer);
    LOG(INFO) << "monitor: agent connected: " << peer;

    api::v1::AgentMessage message;
    while (stream->Read(&message)) agent->Write(internal::Answer(*session, message));

    agent->Shut();
    session.reset();
    LOG(INFO) << "monitor: agent " << context->peer() << " disconnected";
    return grpc::Status::OK;
  }

 private:
  MonitorService& monitor_;
  const absl::Duration hello_timeout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(MonitorService& service,
                                                        const std::string& address,
                                                        const Security& security,
                                                        absl::Duration hello_timeout) {
  // One agent per VM: a few streams are enough, and messages are small.
  return rpc::internal::StartGrpcServer("monitor", address,
                                        std::make_unique<Service>(service, hello_timeout), security,
                                        {.max_message_bytes = 4 << 10, .max_streams = 4});
}

}  // namespace autoscale::rpc::monitor
