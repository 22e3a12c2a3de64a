#include "autoscale/agent/events.h"

#include "autoscale/base/proto_duration.h"
#include "glog/logging.h"

namespace autoscale::agent {

Severity SeverityOf(api::v1::EventKind kind) {
  switch (kind) {
    case api::v1::EVENT_KIND_MIGRATION_FAILED:
    case api::v1::EVENT_KIND_VM_LOST:
    case api::v1::EVENT_KIND_MIGRATION_REPORT_FAILED:
    case api::v1::EVENT_KIND_INCOMING_ABANDONED:
    case api::v1::EVENT_KIND_RUNNER_START_FAILED:
      return Severity::kError;
    case api::v1::EVENT_KIND_NODE_REGISTRATION_FAILED:
    case api::v1::EVENT_KIND_BOUNDS_REFUSED:
    case api::v1::EVENT_KIND_CONFIG_REJECTED:
    case api::v1::EVENT_KIND_RUNNER_RESTARTING:
    case api::v1::EVENT_KIND_SCHEDULER_REQUEST_FAILED:
    case api::v1::EVENT_KIND_PERMIT_REFUSED:
    case api::v1::EVENT_KIND_RESIZE_FAILED:
    case api::v1::EVENT_KIND_MONITOR_UNREACHABLE:
    case api::v1::EVENT_KIND_MONITOR_UNHEALTHY:
    case api::v1::EVENT_KIND_MONITOR_NOTIFY_FAILED:
    case api::v1::EVENT_KIND_DOWNSCALE_REQUEST_FAILED:
    case api::v1::EVENT_KIND_METRICS_REFUSED:
    case api::v1::EVENT_KIND_INCOMING_REFUSED:
      return Severity::kWarning;
    default:
      return Severity::kInfo;
  }
}

void EventLog::Add(absl::Time at, std::string vm, api::v1::EventKind kind, std::string text,
                   std::optional<absl::Duration> duration) {
  const char* const who = vm.empty() ? "-" : vm.c_str();
  switch (SeverityOf(kind)) {
    case Severity::kInfo:
      LOG(INFO) << who << ": " << text;
      break;
    case Severity::kWarning:
      LOG(WARNING) << who << ": " << text;
      break;
    case Severity::kError:
      LOG(ERROR) << who << ": " << text;
      break;
  }
  absl::MutexLock lock(&mu_);
  events_.push_back({next_seq_++, at, std::move(vm), kind, std::move(text), duration});
  while (events_.size() > capacity_) events_.pop_front();
}

std::vector<Event> EventLog::Since(uint64_t after) const {
  absl::MutexLock lock(&mu_);
  std::vector<Event> out;
  for (const Event& e : events_) {
    if (e.seq > after) out.push_back(e);
  }
  return out;
}

api::v1::AgentEvent ToProto(const Event& e) {
  api::v1::AgentEvent p;
  p.set_seq(e.seq);
  p.set_at_unix_ms(absl::ToUnixMillis(e.at));
  p.set_vm(e.vm);
  p.set_kind(e.kind);
  p.set_text(e.text);
  if (e.duration) *p.mutable_duration() = autoscale::ToProto(*e.duration);
  return p;
}

}  // namespace autoscale::agent
