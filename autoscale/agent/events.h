// The agent's event log: what it decided and did, one event each (its kind, an
// api::v1::EventKind, and a line of text: "scheduler granted 1000m/4GiB of 1000m/4GiB"), kept in a
// ring for the status page and written to the log. Readers match events by kind; the text is for
// people.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/api/agent_status.pb.h"

namespace autoscale::agent {

struct Event {
  uint64_t seq = 0;
  absl::Time at;
  // The VM it concerns; empty for the node's own events.
  std::string vm;
  api::v1::EventKind kind = api::v1::EVENT_KIND_UNSPECIFIED;
  std::string text;
  // For timed events (a resize, a migration): how long it took.
  std::optional<absl::Duration> duration;
};

class EventLog {
 public:
  explicit EventLog(size_t capacity = 2000) : capacity_(capacity) {}

  void Add(absl::Time at, std::string vm, api::v1::EventKind kind, std::string text,
           std::optional<absl::Duration> duration = std::nullopt);
  // Events with a sequence number above `after`, oldest first.
  std::vector<Event> Since(uint64_t after) const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
};

// How an event of this kind is logged: a failure is a warning (or an error when a VM's state is in
// doubt), everything else is information.
enum class Severity { kInfo, kWarning, kError };
Severity SeverityOf(api::v1::EventKind kind);

// The event as it appears on the status page.
api::v1::AgentEvent ToProto(const Event& event);

}  // namespace autoscale::agent
