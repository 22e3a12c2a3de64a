#include "autoscale/rpc/monitor/in_process.h"

#include <deque>
#include <optional>
#include <thread>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/rpc/monitor/internal/protocol.h"

namespace autoscale::rpc::monitor {
namespace {

// The monitor's end of the session (handed to the MonitorService) and the queue of what the
// monitor sent on its own, which the client's thread delivers. The monitor may hold it longer
// than the client lives, so it is shared.
class Mailbox final : public AgentStream {
 public:
  using Item = std::variant<api::v1::Metrics, api::v1::UpscaleRequest>;

  bool SendMetrics(const api::v1::Metrics& metrics) override { return Put(metrics); }
  bool SendUpscaleRequest(const api::v1::UpscaleRequest& request) override { return Put(request); }
  void Close() override { CloseWith("the monitor ended the stream"); }

  void CloseWith(const std::string& why) {
    absl::MutexLock lock(&mu_);
    if (!open_) return;
    open_ = false;
    reason_ = why;
  }
  bool open() const {
    absl::MutexLock lock(&mu_);
    return open_;
  }
  std::string reason() const {
    absl::MutexLock lock(&mu_);
    return reason_;
  }
  // The next item, or nothing once closed and drained. Blocks until one of them.
  std::optional<Item> Take() {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !open_ || !items_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (items_.empty()) return std::nullopt;
    Item item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

 private:
  bool Put(Item item) {
    absl::MutexLock lock(&mu_);
    if (!open_) return false;
    items_.push_back(std::move(item));
    return true;
  }

  mutable absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  std::deque<Item> items_ ABSL_GUARDED_BY(mu_);
};

class InProcessClient final : public MonitorClient {
 public:
  InProcessClient(std::string address, Callbacks callbacks)
      : who_(absl::StrCat("monitor at ", address)), callbacks_(std::move(callbacks)) {}

  ~InProcessClient() override {
    mailbox_->CloseWith("the client was destroyed");
    if (deliverer_.joinable()) deliverer_.join();
  }

  absl::Status Start(MonitorService& monitor, const std::string& token) {
    // The handshake as the gRPC server makes it (a client of this build always passes).
    const api::v1::AgentMessage hello = internal::Hello(token);
    api::v1::MonitorMessage reply = internal::HelloReply(hello.id());
    if (absl::Status s = internal::CheckHello(hello); !s.ok()) {
      reply = internal::ErrorReply(hello.id(), api::v1::Error::INVALID_MESSAGE,
                                   std::string(s.message()));
    } else if (absl::Status s = monitor.Admit("", hello.hello().agent_token());
               !s.ok()) {  // in process: no certificate
      reply = internal::ErrorReply(hello.id(), api::v1::Error::PERMISSION_DENIED,
                                   std::string(s.message()));
    }
    RETURN_IF_ERROR(internal::HelloAnswer(reply, who_));
    std::unique_ptr<AgentSession> session = monitor.Connect(mailbox_, "in-process");
    {
      absl::MutexLock lock(&session_mu_);
      session_ = std::move(session);
    }
    deliverer_ = std::thread([this] { Deliver(); });
    return absl::OkStatus();
  }

  absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(const api::v1::Resources& target,
                                                            absl::Duration) override {
    absl::StatusOr<api::v1::MonitorMessage> reply = Call(internal::DownscaleRequest(target));
    if (!reply.ok()) return reply.status();
    return internal::DownscaleResult(*reply, who_);
  }
  absl::Status NotifyUpscale(const api::v1::Resources& granted, absl::Duration) override {
    absl::StatusOr<api::v1::MonitorMessage> reply = Call(internal::UpscaleNotification(granted));
    if (!reply.ok()) return reply.status();
    return internal::UpscaleConfirmation(*reply, who_);
  }
  absl::Status HealthCheck(absl::Duration) override {
    absl::StatusOr<api::v1::MonitorMessage> reply = Call(internal::HealthCheck());
    if (!reply.ok()) return reply.status();
    return internal::HealthCheckReply(*reply, who_);
  }
  bool connected() const override { return mailbox_->open(); }

 private:
  // The session's answer to `request`, or UNAVAILABLE once the session ended.
  absl::StatusOr<api::v1::MonitorMessage> Call(api::v1::AgentMessage request) {
    absl::MutexLock lock(&session_mu_);
    if (session_ == nullptr || !mailbox_->open()) {
      return absl::UnavailableError(absl::StrCat(who_, ": stream closed: ", mailbox_->reason()));
    }
    request.set_id(next_id_);
    next_id_ += 2;
    return internal::Answer(*session_, request);
  }

  // Delivers what the monitor sent, in order; once the session ended, ends the monitor's side
  // of it (outside any lock of the monitor's) and says so.
  void Deliver() {
    while (std::optional<Mailbox::Item> item = mailbox_->Take()) {
      if (const auto* m = std::get_if<api::v1::Metrics>(&*item)) {
        if (callbacks_.on_metrics) callbacks_.on_metrics(*m);
      } else if (callbacks_.on_upscale_request) {
        callbacks_.on_upscale_request(std::get<api::v1::UpscaleRequest>(*item));
      }
    }
    {
      absl::MutexLock lock(&session_mu_);
      session_.reset();
    }
    if (callbacks_.on_closed) callbacks_.on_closed(absl::UnavailableError(mailbox_->reason()));
  }

  const std::string who_;
  const Callbacks callbacks_;
  const std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  // Guards the session: calls use it one at a time, and the deliverer ends it.
  absl::Mutex session_mu_;
  std::unique_ptr<AgentSession> session_ ABSL_GUARDED_BY(session_mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(session_mu_) = 2;
  std::thread deliverer_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MonitorClient>> InProcessConnector::Connect(
    const std::string& address, const AgentBinding& binding, MonitorClient::Callbacks callbacks,
    absl::Duration) {
  auto client = std::make_unique<InProcessClient>(address, std::move(callbacks));
  if (absl::Status s = client->Start(monitor_, binding.token); !s.ok()) return s;
  return client;
}

}  // namespace autoscale::rpc::monitor
