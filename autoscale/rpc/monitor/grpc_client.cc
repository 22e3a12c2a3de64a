#include "autoscale/rpc/monitor_client.h"

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/api/monitor.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc {
namespace {

class GrpcMonitorClient final : public MonitorClient {
 public:
  GrpcMonitorClient(std::string address, Callbacks callbacks)
      : address_(std::move(address)), callbacks_(std::move(callbacks)) {}

  ~GrpcMonitorClient() override {
    context_.TryCancel();
    if (reader_.joinable()) reader_.join();
  }

  absl::Status Start(absl::Duration timeout) {
    auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout))) {
      return absl::UnavailableError(absl::StrCat("monitor at ", address_, ": not reachable within ",
                                                 absl::FormatDuration(timeout)));
    }
    stub_ = api::Monitor::NewStub(channel);
    stream_ = stub_->Connect(&context_);
    reader_ = std::thread([this] { ReadLoop(); });
    api::AgentMessage hello;
    hello.mutable_hello()->set_min_version(api::PROTOCOL_VERSION_1);
    hello.mutable_hello()->set_max_version(api::PROTOCOL_VERSION_1);
    absl::StatusOr<api::MonitorMessage> reply = Call(std::move(hello), timeout);
    if (!reply.ok()) return reply.status();
    if (!reply->has_hello_reply()) {
      return absl::FailedPreconditionError(
          absl::StrCat("monitor at ", address_, ": unexpected answer to Hello"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<api::DownscaleResult> RequestDownscale(const api::Resources& target,
                                                        absl::Duration timeout) override {
    api::AgentMessage m;
    *m.mutable_downscale_request()->mutable_target() = target;
    absl::StatusOr<api::MonitorMessage> reply = Call(std::move(m), timeout);
    if (!reply.ok()) return reply.status();
    if (!reply->has_downscale_result()) return Unexpected("DownscaleRequest");
    return reply->downscale_result();
  }

  absl::Status NotifyUpscale(const api::Resources& granted, absl::Duration timeout) override {
    api::AgentMessage m;
    *m.mutable_upscale_notification()->mutable_granted() = granted;
    absl::StatusOr<api::MonitorMessage> reply = Call(std::move(m), timeout);
    if (!reply.ok()) return reply.status();
    if (!reply->has_upscale_confirmation()) return Unexpected("UpscaleNotification");
    return absl::OkStatus();
  }

  absl::Status HealthCheck(absl::Duration timeout) override {
    api::AgentMessage m;
    m.mutable_health_check();
    absl::StatusOr<api::MonitorMessage> reply = Call(std::move(m), timeout);
    if (!reply.ok()) return reply.status();
    if (!reply->has_health_check()) return Unexpected("HealthCheck");
    return absl::OkStatus();
  }

  bool connected() const override {
    absl::MutexLock lock(&mu_);
    return open_;
  }

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<api::MonitorMessage> reply;
  };

  absl::Status Unexpected(const char* request) {
    return absl::InternalError(
        absl::StrCat("monitor at ", address_, ": unexpected reply to ", request));
  }

  // Sends `m` with a fresh even id and waits for the reply with that id.
  absl::StatusOr<api::MonitorMessage> Call(api::AgentMessage m, absl::Duration timeout) {
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      if (!open_) return Closed();
      id = next_id_;
      next_id_ += 2;
      pending_[id] = std::make_shared<Pending>();
    }
    m.set_id(id);
    bool written;
    {
      absl::MutexLock lock(&write_mu_);
      written = stream_->Write(m);
    }
    absl::MutexLock lock(&mu_);
    std::shared_ptr<Pending> p = pending_[id];
    if (!written && !p->done) {
      pending_.erase(id);
      return absl::UnavailableError(absl::StrCat("monitor at ", address_, ": stream closed"));
    }
    auto done = [&p] { return p->done; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      pending_.erase(id);
      return absl::DeadlineExceededError(
          absl::StrCat("monitor at ", address_, ": no reply in ", absl::FormatDuration(timeout)));
    }
    pending_.erase(id);
    if (!p->reply.ok()) return p->reply.status();
    if (p->reply->has_error()) {
      const api::Error& e = p->reply->error();
      std::string msg = absl::StrCat("monitor at ", address_, ": ", e.message());
      if (e.kind() == api::Error::INVALID_MESSAGE) return absl::InvalidArgumentError(msg);
      return absl::InternalError(msg);
    }
    return p->reply;
  }

  absl::Status Closed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::UnavailableError(absl::StrCat("monitor at ", address_, ": stream closed",
                                               close_reason_.empty() ? "" : ": ", close_reason_));
  }

  void ReadLoop() {
    api::MonitorMessage m;
    while (stream_->Read(&m)) {
      if (m.id() % 2 == 0) {  // a reply to one of our calls
        absl::MutexLock lock(&mu_);
        auto it = pending_.find(m.id());
        if (it != pending_.end()) {
          it->second->reply = m;
          it->second->done = true;
        }
        continue;
      }
      if (m.has_metrics() && callbacks_.on_metrics) callbacks_.on_metrics(m.metrics());
      if (m.has_upscale_request() && callbacks_.on_upscale_request) {
        callbacks_.on_upscale_request(m.upscale_request());
      }
    }
    grpc::Status status = stream_->Finish();
    absl::Status why = status.ok() ? absl::UnavailableError("the monitor ended the stream")
                                   : absl::UnavailableError(status.error_message());
    {
      absl::MutexLock lock(&mu_);
      open_ = false;
      close_reason_ = std::string(why.message());
      for (auto& [id, p] : pending_) {
        p->reply = Closed();
        p->done = true;
      }
    }
    if (callbacks_.on_closed) callbacks_.on_closed(why);
  }

  const std::string address_;
  const Callbacks callbacks_;
  grpc::ClientContext context_;
  std::unique_ptr<api::Monitor::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<api::AgentMessage, api::MonitorMessage>> stream_;
  std::thread reader_;
  // Serializes writes to the stream.
  absl::Mutex write_mu_;
  // Guards the calls waiting for replies and the stream's state.
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Pending>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 2;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  std::string close_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<MonitorClient>> MonitorClient::Connect(const std::string& address,
                                                                      Callbacks callbacks,
                                                                      absl::Duration timeout) {
  auto client = std::make_unique<GrpcMonitorClient>(address, std::move(callbacks));
  absl::Status s = client->Start(timeout);
  if (!s.ok()) return s;
  return client;
}

}  // namespace autoscale::rpc
