#include "autoscale/agent/events.h"

#include "glog/logging.h"

namespace autoscale::agent {

void EventLog::Add(absl::Time at, std::string vm, std::string kind, std::string text) {
  LOG(INFO) << vm << ": " << text;
  absl::MutexLock lock(&mu_);
  events_.push_back({next_seq_++, at, std::move(vm), std::move(kind), std::move(text)});
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

}  // namespace autoscale::agent
