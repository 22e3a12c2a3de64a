#include "autoscale/rpc/monitor/grpc_client.h"

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/api/monitor.grpc.pb.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/identity.h"
#include "autoscale/rpc/monitor/internal/protocol.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::monitor {
namespace {

class GrpcClient final : public MonitorClient {
 public:
  GrpcClient(std::string address, Callbacks callbacks)
      : address_(std::move(address)),
        who_(absl::StrCat("monitor at ", address_)),
        callbacks_(std::move(callbacks)) {}

  ~GrpcClient() override {
    context_.TryCancel();
    if (reader_.joinable()) reader_.join();
  }

  absl::Status Start(const AgentBinding& binding, absl::Duration timeout, const Security& security,
                     std::string trust_domain) {
    // Whom the monitor's certificate must name, known before anything is sent.
    std::string expected;
    if (security.tls() && !binding.vm.empty()) {
      if (trust_domain.empty()) {
        absl::StatusOr<std::string> own = rpc::CertificateIdentity(security.files().cert);
        if (!own.ok()) return own.status();
        trust_domain = rpc::ParseIdentity(*own).trust_domain;
      }
      expected = rpc::SpiffeUri(trust_domain, "vm/" + binding.vm);
    }
    auto channel = grpc::CreateChannel(address_, rpc::ChannelCredentials(security));
    if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout))) {
      return absl::UnavailableError(
          absl::StrCat(who_, ": not reachable within ", absl::FormatDuration(timeout)));
    }
    stub_ = api::v1::Monitor::NewStub(channel);
    stream_ = stub_->Connect(&context_);
    reader_ = std::thread([this] { ReadLoop(); });
    if (!expected.empty()) {
      // The stream is up, so the handshake is done: its certificate is known. Checked before the
      // Hello, which carries the token: another VM's monitor must not learn it.
      const std::string got = rpc::PeerIdentity(context_);
      if (got != expected) {
        return absl::PermissionDeniedError(
            absl::StrCat(who_, ": its certificate names ", rpc::Describe(rpc::ParseIdentity(got)),
                         ", not ", expected, " (the monitor of VM ", binding.vm, ")"));
      }
    }
    absl::StatusOr<api::v1::MonitorMessage> reply = Call(internal::Hello(binding.token), timeout);
    if (!reply.ok()) return reply.status();
    return internal::HelloAnswer(*reply, who_);
  }

  absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(const api::v1::Resources& target,
                                                            absl::Duration timeout) override {
    absl::StatusOr<api::v1::MonitorMessage> reply =
        Call(internal::DownscaleRequest(target), timeout);
    if (!reply.ok()) return reply.status();
    return internal::DownscaleResult(*reply, who_);
  }

  absl::Status NotifyUpscale(const api::v1::Resources& granted, absl::Duration timeout) override {
    absl::StatusOr<api::v1::MonitorMessage> reply =
        Call(internal::UpscaleNotification(granted), timeout);
    if (!reply.ok()) return reply.status();
    return internal::UpscaleConfirmation(*reply, who_);
  }

  absl::Status HealthCheck(absl::Duration timeout) override {
    absl::StatusOr<api::v1::MonitorMessage> reply = Call(internal::HealthCheck(), timeout);
    if (!reply.ok()) return reply.status();
    return internal::HealthCheckReply(*reply, who_);
  }

  bool connected() const override {
    absl::MutexLock lock(&mu_);
    return open_;
  }

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<api::v1::MonitorMessage> reply;
  };

  // Sends `m` with a fresh even id and waits for the reply with that id (which may be an Error).
  absl::StatusOr<api::v1::MonitorMessage> Call(api::v1::AgentMessage m, absl::Duration timeout) {
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
      return absl::UnavailableError(absl::StrCat(who_, ": stream closed"));
    }
    auto done = [&p] { return p->done; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      pending_.erase(id);
      return absl::DeadlineExceededError(
          absl::StrCat(who_, ": no reply in ", absl::FormatDuration(timeout)));
    }
    pending_.erase(id);
    return p->reply;
  }

  absl::Status Closed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string message =
        absl::StrCat(who_, ": stream closed", close_reason_.empty() ? "" : ": ", close_reason_);
    // A refusal stays one even when the stream's end is seen before the Error reply.
    if (refused_) return absl::PermissionDeniedError(message);
    return absl::UnavailableError(message);
  }

  void ReadLoop() {
    api::v1::MonitorMessage m;
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
      refused_ = status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
      for (auto& [id, p] : pending_) {
        p->reply = Closed();
        p->done = true;
      }
    }
    if (callbacks_.on_closed) callbacks_.on_closed(why);
  }

  const std::string address_;
  // "monitor at <address>", the start of every error.
  const std::string who_;
  const Callbacks callbacks_;
  grpc::ClientContext context_;
  std::unique_ptr<api::v1::Monitor::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<api::v1::AgentMessage, api::v1::MonitorMessage>> stream_;
  std::thread reader_;
  // Serializes writes to the stream.
  absl::Mutex write_mu_;
  // Guards the calls waiting for replies and the stream's state.
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Pending>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 2;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  std::string close_reason_ ABSL_GUARDED_BY(mu_);
  // The monitor refused this agent (Admit).
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MonitorClient>> ConnectGrpc(
    const std::string& address, const AgentBinding& binding, MonitorClient::Callbacks callbacks,
    absl::Duration timeout, const Security& security, const std::string& trust_domain) {
  auto client = std::make_unique<GrpcClient>(address, std::move(callbacks));
  absl::Status s = client->Start(binding, timeout, security, trust_domain);
  if (!s.ok()) return s;
  return client;
}

}  // namespace autoscale::rpc::monitor
