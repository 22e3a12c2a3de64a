// Configuration of the scaling algorithm and of the agent's timers, with the reference system's
// defaults and validation that names the offending field. Reading them from the protos of
// autoscale/api (per-VM overrides on agent-wide defaults) is config_proto.h.
//
//   ScalingConfig config;
//   config.lfc_window_size_minutes = 1;
//   ValidateScalingConfig(config);  // "scaling config: lfcWindowSizeMinutes must be >= 2, got 1"
//
// Field names in errors are the JSON names of autoscale/api/config.proto (the reference's names).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace autoscale::core {

// How a VM's goal size is computed (neon-autoscaling.md section 2.2). Defaults are the reference's
// shipped values; the last two fields go beyond the reference and are off by default.
struct ScalingConfig {
  double load_average_fraction_target = 0.9;
  double memory_usage_fraction_target = 0.75;
  double memory_total_fraction_target = 0.9;
  bool enable_lfc_metrics = false;
  bool lfc_use_largest_window = false;
  double lfc_to_memory_ratio = 0.75;
  int lfc_window_size_minutes = 5;
  int lfc_min_wait_before_downscale_minutes = 5;
  double cpu_stable_zone_ratio = 0;
  double cpu_mixed_zone_ratio = 0;

  // Scale down only to the highest goal seen within this window (like Kubernetes' HPA
  // stabilization window). Zero: off.
  absl::Duration downscale_stabilization_window = absl::ZeroDuration();
  // Shrink by at most this many compute units per step. Zero: off.
  uint32_t max_downscale_step_cu = 0;
};

// Checks ranges; the error names the field and the value. Every numeric field has an upper bound,
// and the checks themselves cannot overflow.
absl::Status ValidateScalingConfig(const ScalingConfig& config);

// Upper bounds of what a config may say: far above any real VM, and low enough that a compute
// unit times a count of them (kMaxCu) fits int64 (2^40 bytes * 2^20 = 2^60).
inline constexpr int64_t kMaxComputeUnitMilliCpu = 1'000'000;            // 1000 CPUs
inline constexpr int64_t kMaxComputeUnitMemoryBytes = int64_t{1} << 40;  // 1 TiB
inline constexpr uint32_t kMaxCu = 1 << 20;
// The longest an agent timing may be.
inline constexpr absl::Duration kMaxTiming = absl::Hours(24);

// The agent's timers (neon-autoscaling.md section 2.4), reference defaults.
struct Timings {
  absl::Duration scheduler_request_at_least_every = absl::Seconds(15);
  absl::Duration scheduler_retry_failed_request = absl::Seconds(3);
  absl::Duration scheduler_retry_denied_upscale = absl::Seconds(2);
  // The reference configures 2s but, by a bug, uses the VM timeout (10s); we use our own.
  absl::Duration scheduler_request_timeout = absl::Seconds(2);
  absl::Duration monitor_response_timeout = absl::Seconds(5);
  absl::Duration monitor_retry_failed_request = absl::Seconds(3);
  absl::Duration monitor_retry_denied_downscale = absl::Seconds(5);
  absl::Duration monitor_requested_upscale_valid = absl::Seconds(10);
  absl::Duration vm_request_timeout = absl::Seconds(10);
  absl::Duration vm_retry_failed_request = absl::Seconds(5);
};

}  // namespace autoscale::core
