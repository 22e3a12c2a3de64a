// Memory watchers: the kernel tells the monitor the moment a cgroup's memory passes a threshold
// or comes under pressure, with no polling. All are driven by one EventLoop and report through a
// callback on its thread.
//
//   cgroup v1  NewV1ThresholdWatcher: a usage threshold on memory.usage_in_bytes through
//              cgroup.event_control and an eventfd (fires within a millisecond of the crossing,
//              in both directions).
//   cgroup v2  NewV2HighWatcher: the `high` counter of memory.events, watched with inotify (the
//              kernel raises a file-modified event), for the memory.high the operator set. It
//              never writes memory.high (past it the kernel throttles the group): SetThreshold
//              is accepted and ignored, and the threshold is checked by sampling.
//   PSI        NewPsiWatcher: a trigger on a memory.pressure file (a cgroup2 group's, or
//              /proc/pressure/memory); fires when stall time passes a limit within a window.
//
//   auto watcher = NewV1ThresholdWatcher(*loop, "/sys/fs/cgroup/memory/vm", [](MemoryEvent e) {
//     if (e.kind == MemoryEvent::Kind::kUsageAbove) ...;
//   });
//   RETURN_IF_ERROR((*watcher)->SetThreshold(900 << 20));
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "monitor/cgroup/event_loop.h"

namespace autoscale::monitor::cgroup {

struct MemoryEvent {
  enum class Kind {
    kUsageAbove,  // usage crossed the threshold upwards
    kUsageBelow,  // ... or downwards
    kHigh,        // v2: usage went past memory.high
    kPressure,    // PSI: the stall limit was reached
  };
  Kind kind;
  // The group's usage when the event was handled (memory.usage_in_bytes or memory.current);
  // -1 when the watcher has no usage file (PSI on /proc/pressure/memory).
  int64_t usage_bytes = -1;
};
const char* MemoryEventKindName(MemoryEvent::Kind kind);

using MemoryEventCallback = std::function<void(const MemoryEvent&)>;

class MemoryWatcher {
 public:
  virtual ~MemoryWatcher() = default;
  // Reports when usage passes `threshold_bytes` from now on, replacing an earlier threshold.
  // Thread-safe. Watchers without a threshold (PSI) accept and ignore it.
  virtual absl::Status SetThreshold(int64_t threshold_bytes) = 0;
  // "cgroup v1 threshold on /sys/fs/cgroup/memory/vm" (for logs).
  virtual std::string Describe() const = 0;
};

absl::StatusOr<std::unique_ptr<MemoryWatcher>> NewV1ThresholdWatcher(EventLoop& loop,
                                                                     const std::string& cgroup_dir,
                                                                     MemoryEventCallback callback);

absl::StatusOr<std::unique_ptr<MemoryWatcher>> NewV2HighWatcher(EventLoop& loop,
                                                                const std::string& cgroup_dir,
                                                                MemoryEventCallback callback);

// memory.high of a cgroup v2 group as the operator declares it (the monitor's --memory_high):
// "max" (no throttle: Neon runs Postgres so), a size in bytes, or "keep" (whatever is there). The
// monitor never changes memory.high while it runs; but monitor 0.1.0 set it to its threshold (the
// kernel then reclaims and throttles the group past 85 % of the VM's memory) and a crashed one
// left it so. No record tells that value from an operator's, so the operator's is declared here
// and anything else found at start is taken for such a leftover and repaired.
absl::Status CheckMemoryHighSetting(const std::string& setting);

// Sets `cgroup_dir`/memory.high to `setting` (CheckMemoryHighSetting) unless it is that already
// (a size compares after the kernel's rounding down to whole pages) or `setting` is "keep".
// Returns what was there when it changed it, nullopt when it did not. Errors name the file.
absl::StatusOr<std::optional<std::string>> RepairMemoryHigh(const std::string& cgroup_dir,
                                                            const std::string& setting);

struct PsiTrigger {
  // "full" (all tasks stalled) or "some" (at least one).
  bool full = false;
  // Report when stalls add up to `stall` within `window`.
  absl::Duration stall = absl::Milliseconds(150);
  absl::Duration window = absl::Seconds(2);
};

// The window the kernel will accept from this process: without CAP_SYS_RESOURCE a multiple of
// 2 seconds (rounded up), otherwise as asked; always within the kernel's 500ms..10s.
absl::Duration AcceptedPsiWindow(absl::Duration requested, bool has_cap_sys_resource);

// `pressure_file` is a cgroup2 group's memory.pressure or /proc/pressure/memory. The window is
// rounded up to what the kernel accepts (AcceptedPsiWindow).
absl::StatusOr<std::unique_ptr<MemoryWatcher>> NewPsiWatcher(EventLoop& loop,
                                                             const std::string& pressure_file,
                                                             PsiTrigger trigger,
                                                             MemoryEventCallback callback);

}  // namespace autoscale::monitor::cgroup
