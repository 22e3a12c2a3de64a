// The in-VM monitor's logic: a memory threshold, upscale requests the moment usage passes it,
// downscale checks that keep headroom, and the LFC kept sized to the VM's memory
// (neon-autoscaling.md section 5).
//
//   threshold = (memory - system reserve) * threshold fraction   (0.85 of memory - 100 MiB)
//
// Usage is the group's non-reclaimable memory (anon, from memory.stat), sampled on a timer and
// at once when a kernel watcher fires (monitor/cgroup/watchers.h). The kernel watches the group's
// total charge, which also holds page cache and kernel memory, so the watcher is armed at the
// threshold plus that overhead as last measured: it fires when anon reaches the threshold, also
// in a VM whose page cache sits above it. A downscale to `target` is approved only if the
// threshold at `target` stays `downscale_headroom` above the average usage; the LFC shrinks
// before the approval, and grows after an upscale.
//
// The Monitor does no I/O itself: its Hooks read memory.stat, re-arm the kernel watcher and send
// upscale requests, so tests drive it with a manual clock.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "lfc/resizer.h"
#include "monitor/cgroup/layout.h"
#include "monitor/cgroup/watchers.h"
#include "monitor/options.h"

namespace autoscale::monitor {

class Monitor {
 public:
  struct Hooks {
    // Reads the group's memory now (memory.stat, and its total charge into usage_bytes).
    std::function<absl::StatusOr<cgroup::MemoryStat>()> read_stat;
    // Re-arms the kernel watcher at a level of the group's total charge (may be empty).
    std::function<absl::Status(int64_t level_bytes)> set_threshold;
    // Sends an upscale request to the agent (may be empty). Called without the monitor's lock.
    std::function<void(int64_t usage_bytes, int64_t threshold_bytes)> request_upscale;
  };

  struct DownscaleDecision {
    bool ok;
    std::string status;  // why, in words
  };

  Monitor(const MonitorOptions& options, Clock& clock, lfc::LfcResizer& resizer, Hooks hooks);

  // Sets the VM's memory: sizes the LFC (a failure is logged, not returned) and arms the
  // threshold (a failure is returned). Call once at start.
  absl::Status Start(int64_t memory_bytes);

  // Reads a sample, checks the threshold and moves the watch level.
  void Sample();
  // A kernel watcher fired.
  void OnMemoryEvent(const cgroup::MemoryEvent& event);

  // May the VM shrink to `target_memory_bytes`? An error means the check could not be made
  // (no recent sample, or the LFC could not shrink); the agent then retries later.
  absl::StatusOr<DownscaleDecision> TryDownscale(int64_t target_memory_bytes);
  // The VM now has `granted_memory_bytes`: raise the threshold, grow the LFC.
  absl::Status NotifyUpscale(int64_t granted_memory_bytes);

  // Sets the LFC's size again if a sizing failed (Postgres was not up) and its back-off (1 s,
  // doubling to 1 min) has passed, or ResizeLfcSoon asked; otherwise does nothing. Call it
  // regularly from a thread that may block on Postgres (not the event loop).
  absl::Status RetryLfc();
  // The next RetryLfc sizes the LFC whatever happened before (an agent connected: Postgres may
  // have been restarted, or the setting reset).
  void ResizeLfcSoon();
  // Whether the LFC's size is still to be set.
  bool lfc_pending() const;

  int64_t memory_bytes() const;
  int64_t threshold_bytes() const;
  // The level of the group's total charge the watcher is armed at.
  int64_t watch_level_bytes() const;
  // The average of the last samples, if any.
  std::optional<int64_t> average_usage_bytes() const;
  int64_t upscale_requests() const;

 private:
  // Records a sample and moves the watch level; returns whether an upscale request is due (and
  // marks it sent). `instant` checks this sample, otherwise the average.
  bool RecordAndCheck(const cgroup::MemoryStat& stat, bool instant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool UpscaleDue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<int64_t> Average() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyThreshold(int64_t memory_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Arms the watcher at threshold + overhead, unless it is armed within the slacks of that
  // (`force`: re-arm anyway). A failure leaves it to be tried at the next sample.
  absl::Status Arm(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendUpscale(int64_t usage, int64_t threshold);

  const MonitorOptions options_;
  Clock& clock_;
  lfc::LfcResizer& resizer_;
  const Hooks hooks_;

  // The LFC retry's first back-off, doubled after each failure up to the second.
  static constexpr absl::Duration kLfcFirstRetry = absl::Seconds(1);
  static constexpr absl::Duration kLfcMaxRetry = absl::Minutes(1);
  // Sets the LFC's size for `memory_bytes` and records whether it must be retried.
  absl::Status SizeLfc(int64_t memory_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(resize_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);

  // One LFC resize at a time: a downscale check, an upscale notification and a retry never
  // interleave. Taken before mu_, which is never held across a resize (Postgres I/O, up to the
  // resizer's timeout), so samples on the event loop never wait on Postgres.
  absl::Mutex resize_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Guards the VM's size, the threshold, the samples, the rate limit and the LFC retry state.
  mutable absl::Mutex mu_;
  // The LFC's size must be set again (a sizing failed, or an agent connected), from
  // next_lfc_try_ on.
  bool lfc_pending_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_lfc_try_ ABSL_GUARDED_BY(mu_);
  absl::Duration lfc_backoff_ ABSL_GUARDED_BY(mu_) = kLfcFirstRetry;
  int64_t memory_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t threshold_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  struct UsageSample {
    absl::Time at;
    int64_t anon_bytes;
  };
  std::deque<UsageSample> samples_ ABSL_GUARDED_BY(mu_);
  // The group's charge beyond anon (page cache, kernel memory) at the last sample, and the level
  // the watcher is armed at (-1: not armed).
  int64_t overhead_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_file_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t armed_level_ ABSL_GUARDED_BY(mu_) = -1;
  // The next Arm re-arms whatever the slacks say (a forced arming failed, or an event could not
  // be looked at).
  bool rearm_needed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Time> last_upscale_request_ ABSL_GUARDED_BY(mu_);
  int64_t upscale_requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace autoscale::monitor
