// The in-VM monitor's policy: its options and the memory threshold they give a VM
// (neon-autoscaling.md section 5). Pure: no cgroups, no I/O, so that the simulator can follow the
// same rules without linking what the monitor daemon needs (monitor.h has the Monitor itself).
//
//   absl::StatusOr<MonitorOptions> options = OptionsFromProto(config);  // defaults + config
//   int64_t threshold = ThresholdBytes(4 * kGiB, *options);            // ask for more above it
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/config.pb.h"
#include "lfc/sizing.h"

namespace autoscale::monitor {

struct MonitorOptions {
  // Ask for more memory when usage passes this fraction of usable memory. (0, 1].
  double threshold_fraction = 0.85;
  // Memory kept for the kernel and system services: not usable.
  int64_t system_reserve_bytes = 100 << 20;
  // Memory of the VM that its kernel keeps for itself and never shows in MemTotal (the VM's
  // nominal size minus MemTotal, measured at start): not usable either. The reference leaves it
  // out, which puts a small VM's threshold above what its guest can ever hold.
  int64_t kernel_overhead_bytes = 0;
  // A downscale must leave the new threshold this far above the average usage.
  int64_t downscale_headroom_bytes = 100 << 20;
  // At most one upscale request per this interval.
  absl::Duration upscale_request_min_interval = absl::Seconds(1);
  // Sampling memory.stat, for the downscale check's average and as a fallback to the watcher.
  absl::Duration sample_interval = absl::Seconds(1);
  // The watcher is re-armed when the overhead above anon grew by more than this, or shrank by
  // more than rearm_slack_above_bytes (a level left above where anon meets the threshold misses
  // a crossing smaller than the gap; the kernel's per-CPU charge batches move the overhead by
  // up to 256 KiB per CPU all the time).
  int64_t rearm_slack_bytes = 2 << 20;
  int64_t rearm_slack_above_bytes = 256 << 10;
  // Samples averaged for the downscale check, and how many are needed before any approval.
  int samples_averaged = 5;
  int min_samples = 2;
  // Without a sample this recent, a downscale check is an error (not a denial).
  absl::Duration max_sample_age = absl::Seconds(5);
  lfc::SizingConfig lfc;
};

// Defaults overridden by the fields set in `config`, validated (errors name the field).
absl::StatusOr<MonitorOptions> OptionsFromProto(const api::v1::MonitorConfig& config);

// The threshold for a VM with `memory_bytes`: (memory - kernel overhead - system reserve) times
// the fraction; 0 if nothing is left.
int64_t ThresholdBytes(int64_t memory_bytes, const MonitorOptions& options);

}  // namespace autoscale::monitor
