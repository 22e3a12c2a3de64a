// The goal computation: from a VM's metrics, its compute unit and the scaling config, how many
// compute units the VM should have, and why. Pure and allocation-free; the reference formulas
// (neon-autoscaling.md section 2.2), rounding quirks included:
//
//   cpu    = blended load average / loadAverageFractionTarget / CU.vCPU
//   memory = round(usage / memoryUsageFractionTarget) / CU.mem
//   total  = (usage + min(LFC working set, cached)) / memoryTotalFractionTarget / CU.mem
//   lfc    = projected working set / lfcToMemoryRatio / CU.mem
//   goal   = ceil(max(round(cpu), memory, total, lfc))
//
//   Goal g = ComputeGoal(config, cu, &system_metrics, /*lfc=*/nullptr);
//   // g.goal_cu == 4, g.decided_by == Signal::kCpu, g.cpu_cu == 4.44...
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "autoscale/core/config.h"
#include "autoscale/core/resources.h"

namespace autoscale::core {

// Load and memory of the guest.
struct SystemMetrics {
  double load_avg_1m = 0;
  double load_avg_5m = 0;
  // The usage term of the memory formula (the reference: MemTotal - MemAvailable + 100 MiB).
  double memory_usage_bytes = 0;
  double memory_cached_bytes = 0;
};

// LFC working-set estimates: element i is the number of distinct 8 KiB pages touched in the last
// i+1 minutes.
struct LfcMetrics {
  std::vector<double> working_set_pages;
};

inline constexpr double kLfcPageBytes = 8192;

// Which input set the goal.
enum class Signal {
  kNone,              // no metrics: goal 0
  kCpu,               // load average
  kMemory,            // memory usage
  kMemoryTotal,       // memory usage + cached LFC working set
  kLfc,               // LFC working set
  kMonitorUpscale,    // the monitor asked for more memory
  kDeniedDownscale,   // the monitor refused a smaller size recently
  kStabilization,     // a higher goal within the downscale stabilization window
  kMaxDownscaleStep,  // the downscale step limit
  kCurrentUsage,      // metrics are missing: never below what the VM uses
  kMinBound,          // raised to the VM's minimum
  kMaxBound,          // lowered to the VM's maximum
  kMigrating,         // frozen while the VM migrates
};
const char* SignalName(Signal s);

// The goal and its breakdown. Sub-goals are in (fractional) compute units; absent when their
// inputs are.
struct Goal {
  std::optional<double> cpu_cu;
  std::optional<double> memory_cu;
  std::optional<double> memory_total_cu;
  std::optional<double> lfc_cu;
  // The blended load average the CPU goal used.
  std::optional<double> load_average;
  // The LFC working-set estimate (the knee) and its short projection, in 8 KiB pages.
  std::optional<double> lfc_estimate_pages;
  std::optional<double> lfc_projected_pages;
  // ceil(max(round(cpu), memory, total, lfc)); 0 without metrics.
  uint32_t goal_cu = 0;
  Signal decided_by = Signal::kNone;
  // False if system metrics are missing, or LFC metrics are enabled but missing: the caller must
  // then never go below what the VM uses.
  bool has_all_metrics = false;
};

// `system` and `lfc` may be null (not received yet). LFC metrics are used only when
// config.enable_lfc_metrics; with too few windows there is no LFC goal.
Goal ComputeGoal(const ScalingConfig& config, const Resources& compute_unit,
                 const SystemMetrics* system, const LfcMetrics* lfc);
// The same goal, written over every field of `out`: for a caller that keeps a Goal and
// recomputes it at every metrics update (a new Goal is cleared as a whole first).
void ComputeGoal(const ScalingConfig& config, const Resources& compute_unit,
                 const SystemMetrics* system, const LfcMetrics* lfc, Goal& out);

// The knee estimator: the first window t >= initial_offset whose following slope (over
// window_size - 1 minutes) is more than max_increase_factor times the preceding one; the value
// there is the "true" working set. Without a knee, the largest window. Requires window_size >= 2
// and initial_offset >= window_size - 1.
double EstimateTrueWorkingSetSize(std::span<const double> series, double max_increase_factor,
                                  int initial_offset, int window_size);

// The highest value reached if any step of `series` continued for `project_len` more steps
// (decreases ignored). With fewer than two values, the largest value (no projection).
double ProjectNextHighest(std::span<const double> series, double project_len);

}  // namespace autoscale::core
