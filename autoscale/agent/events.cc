#include "autoscale/agent/events.h"

#include "autoscale/base/proto_duration.h"
#include "glog/logging.h"

namespace autoscale::agent {

void EventLog::Add(absl::Time at, std::string vm, api::EventKind kind, std::string text,
                   std::optional<absl::Duration> duration) {
  LOG(INFO) << (vm.empty() ? "-" : vm) << ": " << text;
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

api::AgentEvent ToProto(const Event& e) {
  api::AgentEvent p;
  p.set_seq(e.seq);
  p.set_at_unix_ms(absl::ToUnixMillis(e.at));
  p.set_vm(e.vm);
  p.set_kind(e.kind);
  p.set_text(e.text);
  if (e.duration) *p.mutable_duration() = autoscale::ToProto(*e.duration);
  return p;
}

}  // namespace autoscale::agent
