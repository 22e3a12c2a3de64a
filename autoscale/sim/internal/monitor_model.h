// The in-VM monitor's rules (monitor/monitor.h), restated for the simulator: the same threshold
// (monitor::ThresholdBytes), options (monitor::MonitorOptions), upscale rule and downscale check,
// for a guest whose memory is all non-reclaimable (no page cache), in a small object with no
// lock, no hooks and no allocation.
//
// Why not the real class: a fleet of 10,000 simulated VMs samples memory 170 million times a day,
// and monitor::Monitor's lock, hooks and sample deque (one more heap block per VM) cost more than
// the core's own decision per step. monitor_model_test.cc drives this model and the real
// monitor::Monitor through the same random sequences and checks they decide the same way, so a
// change of the real rules shows up there.
//
//   MonitorModel m(options);
//   m.Start(4 * kGiB);
//   if (m.Sample(now, usage)) ...          // ask the agent for more memory
//   MonitorModel::Decision d = m.TryDownscale(now, 3 * kGiB);
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "monitor/options.h"

namespace autoscale::sim {

class MonitorModel {
 public:
  // The model keeps at most this many samples (options.samples_averaged must not exceed it).
  static constexpr int kMaxSamples = 8;

  // `options` must outlive the model (one per fleet).
  explicit MonitorModel(const monitor::MonitorOptions& options) : options_(&options) {}

  // monitor::Monitor::Start: the VM's memory.
  void Start(int64_t memory_bytes) { SetMemory(memory_bytes); }

  // A timer sample (monitor::Monitor::Sample): true if an upscale request is sent now.
  bool Sample(absl::Time now, int64_t usage_bytes) { return Record(now, usage_bytes, false); }
  // The kernel watcher fired at `usage_bytes` (monitor::Monitor::OnMemoryEvent, kUsageAbove).
  bool OnUsageAbove(absl::Time now, int64_t usage_bytes) { return Record(now, usage_bytes, true); }

  enum class Decision { kApproved, kDenied, kError };
  // monitor::Monitor::TryDownscale (the LFC always shrinks).
  Decision TryDownscale(absl::Time now, int64_t target_memory_bytes);
  // monitor::Monitor::NotifyUpscale.
  void NotifyUpscale(int64_t granted_memory_bytes) { SetMemory(granted_memory_bytes); }

  int64_t memory_bytes() const { return memory_bytes_; }
  // Also the level the kernel watcher is armed at (there is no page cache above it).
  int64_t threshold_bytes() const { return threshold_bytes_; }
  std::optional<int64_t> average_usage_bytes() const;
  int64_t upscale_requests() const { return upscale_requests_; }

 private:
  void SetMemory(int64_t memory_bytes) {
    memory_bytes_ = memory_bytes;
    threshold_bytes_ = monitor::ThresholdBytes(memory_bytes, *options_);
  }
  bool Record(absl::Time now, int64_t usage_bytes, bool instant);

  const monitor::MonitorOptions* options_;
  int64_t memory_bytes_ = 0;
  int64_t threshold_bytes_ = 0;
  // The last samples, a ring; `sum_` is their sum.
  std::array<int64_t, kMaxSamples> samples_{};
  int count_ = 0;
  int next_ = 0;
  int64_t sum_ = 0;
  absl::Time last_sample_ = absl::InfinitePast();
  absl::Time last_upscale_request_ = absl::InfinitePast();
  int64_t upscale_requests_ = 0;
};

}  // namespace autoscale::sim
