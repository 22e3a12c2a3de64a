#include "monitor/agent_link.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "glog/logging.h"

namespace autoscale::monitor {

// One agent's session: answers its requests with the Monitor and pushes metrics to it from its
// own thread until it ends.
class AgentLink::Session final : public rpc::monitor::AgentSession {
 public:
  Session(AgentLink& link, std::shared_ptr<rpc::monitor::AgentStream> agent)
      : link_(link), agent_(std::move(agent)) {
    metrics_thread_ = std::thread([this] { PushMetrics(); });
  }
  ~Session() override {
    stop_.Notify();
    metrics_thread_.join();
    link_.Ended(this);
  }

  absl::StatusOr<api::DownscaleResult> RequestDownscale(
      const api::DownscaleRequest& request) override {
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
    api::DownscaleResult result;
    result.set_ok(d->ok);
    result.set_status(d->status);
    return result;
  }

  absl::Status NotifyUpscale(const api::UpscaleNotification& notification) override {
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
  void PushMetrics() {
    do {
      absl::StatusOr<api::Metrics> m = link_.metrics_.Read();
      if (!m.ok()) {
        LOG_EVERY_N(WARNING, 30) << "monitor: reading metrics: " << m.status();
        continue;
      }
      agent_->SendMetrics(*m);
    } while (!stop_.WaitForNotificationWithTimeout(link_.options_.metrics_interval));
  }

  AgentLink& link_;
  const std::shared_ptr<rpc::monitor::AgentStream> agent_;
  absl::Notification stop_;
  std::thread metrics_thread_;
};

AgentLink::AgentLink(Monitor& monitor, const MetricsReader& metrics, AgentLinkOptions options)
    : monitor_(monitor), metrics_(metrics), options_(options) {}

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
  std::shared_ptr<rpc::monitor::AgentStream> agent;
  {
    absl::MutexLock lock(&mu_);
    agent = agent_;
  }
  if (!agent) return false;
  api::UpscaleRequest r;
  r.set_usage_bytes(usage_bytes);
  r.set_threshold_bytes(threshold_bytes);
  return agent->SendUpscaleRequest(r);
}

std::unique_ptr<rpc::monitor::AgentSession> AgentLink::Connect(
    std::shared_ptr<rpc::monitor::AgentStream> agent, const std::string& peer) {
  absl::MutexLock lock(&mu_);
  // One agent at a time: the newest wins.
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
