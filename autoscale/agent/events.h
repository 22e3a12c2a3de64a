// The agent's event log: what it decided and did, one line each ("vm1: scheduler granted
// 1000m/4GiB of 1000m/4GiB"), kept in a ring for the status page and written to the log.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace autoscale::agent {

struct Event {
  uint64_t seq = 0;
  absl::Time at;
  std::string vm;
  // A short machine-readable kind: "permit", "partial", "denied", "resize", "upscale_request",
  // "downscale_approved", "downscale_denied", "monitor", "migration", "error", ...
  std::string kind;
  std::string text;
};

class EventLog {
 public:
  explicit EventLog(size_t capacity = 2000) : capacity_(capacity) {}

  void Add(absl::Time at, std::string vm, std::string kind, std::string text);
  // Events with a sequence number above `after`, oldest first.
  std::vector<Event> Since(uint64_t after) const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace autoscale::agent
