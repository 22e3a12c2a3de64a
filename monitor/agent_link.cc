#include "monitor/agent_link.h"

#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "autoscale/rpc/identity.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "glog/logging.h"

namespace autoscale::monitor {

// One agent's session: answers its requests with the Monitor, and sends it metrics and upscale
// requests from its own thread until it ends (a write to a slow agent blocks that thread only,
// never the monitor's event loop, which queues upscale requests here).
class AgentLink::Session final : public rpc::monitor::AgentSession {
 public:
  Session(AgentLink& link, std::shared_ptr<rpc::monitor::AgentStream> agent)
      : link_(link), agent_(std::move(agent)) {
    sender_ = std::thread([this] { Send(); });
  }
  ~Session() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    sender_.join();
    link_.Ended(this);
  }

  // Queued for the sender thread; a newer request replaces one not sent yet.
  void QueueUpscale(api::v1::UpscaleRequest request) {
    absl::MutexLock lock(&mu_);
    upscale_ = std::move(request);
  }

  absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(
      const api::v1::DownscaleRequest& request) override {
    const int64_t target = request.target().memory_bytes();
    if (target <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("downscale target memory must be > 0, got ", target));
    }
    absl::StatusOr<Monitor::DownscaleDecision> d = link_.monitor_.TryDownscale(target);
    // The check could not be made: the agent retries later (INTERNAL, whatever the cause).
    if (!d.ok()) return absl::InternalError(d.status().message());
    LOG(INFO) << "monitor: downscale to " << target / (1 << 20) << " MiB "
              << (d->ok ? "approved" : "denied") << ": " << d->status;
    api::v1::DownscaleResult result;
    result.set_ok(d->ok);
    result.set_status(d->status);
    return result;
  }

  absl::Status NotifyUpscale(const api::v1::UpscaleNotification& notification) override {
    const int64_t granted = notification.granted().memory_bytes();
    if (granted <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("granted memory must be > 0, got ", granted));
    }
    if (absl::Status s = link_.monitor_.NotifyUpscale(granted); !s.ok()) {
      return absl::InternalError(s.message());
    }
    return absl::OkStatus();
  }

 private:
  void Send() {
    absl::Time next_metrics = absl::Now();
    while (true) {
      std::optional<api::v1::UpscaleRequest> upscale;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || upscale_.has_value();
        };
        mu_.AwaitWithDeadline(absl::Condition(&ready), next_metrics);
        if (stop_) return;
        upscale.swap(upscale_);
      }
      if (upscale) agent_->SendUpscaleRequest(*upscale);
      if (absl::Now() < next_metrics) continue;
      next_metrics = absl::Now() + link_.options_.metrics_interval;
      absl::StatusOr<api::v1::Metrics> m = link_.metrics_.Read();
      if (!m.ok()) {
        LOG_EVERY_N(WARNING, 30) << "monitor: reading metrics: " << m.status();
        continue;
      }
      agent_->SendMetrics(*m);
    }
  }

  AgentLink& link_;
  const std::shared_ptr<rpc::monitor::AgentStream> agent_;
  // Guards what the sender thread is to do.
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<api::v1::UpscaleRequest> upscale_ ABSL_GUARDED_BY(mu_);
  std::thread sender_;
};

AgentLink::AgentLink(Monitor& monitor, const MetricsReader& metrics, AgentLinkOptions options)
    : monitor_(monitor), metrics_(metrics), options_(std::move(options)) {
  if (options_.agent_token.empty()) {
    LOG(WARNING) << "monitor: no agent token: the link is not bound to this VM's agent (any "
                 << (options_.require_agent_identity ? "node's agent of the trust domain"
                                                     : "caller")
                 << " may connect and replace the live one)";
  }
}

AgentLink::~AgentLink() { Disconnect(); }

bool AgentLink::connected() const {
  absl::MutexLock lock(&mu_);
  return current_ != nullptr;
}

void AgentLink::Disconnect() {
  absl::MutexLock lock(&mu_);
  if (agent_) agent_->Close();
}

bool AgentLink::SendUpscaleRequest(int64_t usage_bytes, int64_t threshold_bytes) {
  api::v1::UpscaleRequest r;
  r.set_usage_bytes(usage_bytes);
  r.set_threshold_bytes(threshold_bytes);
  absl::MutexLock lock(&mu_);
  if (current_ == nullptr) return false;
  current_->QueueUpscale(std::move(r));
  return true;
}

absl::Status AgentLink::Admit(const std::string& identity, const std::string& token) {
  const rpc::Identity who = rpc::ParseIdentity(identity);
  if (!options_.agent_token.empty() && !rpc::monitor::TokensEqual(token, options_.agent_token)) {
    return absl::PermissionDeniedError(absl::StrCat(
        rpc::Describe(who), token.empty() ? " sent no agent token" : " sent a wrong agent token",
        ": only this VM's agent, which holds the token the VM got at boot, may "
        "connect"));
  }
  if (!options_.require_agent_identity) return absl::OkStatus();
  if (who.role == rpc::Identity::Role::kNode &&
      (options_.trust_domain.empty() || who.trust_domain == options_.trust_domain)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(rpc::Describe(who), " may not be this VM's agent (only spiffe://",
                   options_.trust_domain.empty() ? "<trust-domain>" : options_.trust_domain,
                   "/node/<name> may)"));
}

std::unique_ptr<rpc::monitor::AgentSession> AgentLink::Connect(
    std::shared_ptr<rpc::monitor::AgentStream> agent, const std::string& peer) {
  absl::MutexLock lock(&mu_);
  // One agent at a time: the newest admitted wins (an agent that restarted, or the migration
  // target's).
  if (agent_) {
    LOG(INFO) << "monitor: a new agent connected (" << peer << "); ending the previous stream";
    agent_->Close();
  }
  // Postgres may have restarted (or its setting been reset) since the LFC was last sized.
  monitor_.ResizeLfcSoon();
  auto session = std::make_unique<Session>(*this, agent);
  current_ = session.get();
  agent_ = std::move(agent);
  return session;
}

void AgentLink::Ended(const Session* session) {
  absl::MutexLock lock(&mu_);
  if (current_ != session) return;
  current_ = nullptr;
  agent_.reset();
}

}  // namespace autoscale::monitor
