#include "autoscale/core/goal.h"

#include <algorithm>
#include <cmath>

namespace autoscale::core {
namespace {

// The reference hard-codes these two.
constexpr double kMaxAllowedIncreaseFactor = 3.0;
constexpr double kProjectLen = 0.5;

// Goals are clamped to this before conversion, so absurd inputs cannot overflow.
constexpr double kMaxGoalCu = 1 << 30;

// 0 at or below t1, 1 at or above t2, linear between (the reference adds 1e-6 to the divisor).
double BlendingFactor(double value, double t1, double t2) {
  if (value <= t1) return 0;
  if (value >= t2) return 1;
  return (value - t1) / (t2 - t1 + 1e-6);
}

double BlendedLoadAverage(const ScalingConfig& c, const SystemMetrics& m) {
  double stable = c.cpu_stable_zone_ratio * m.load_avg_5m;
  double mixed = stable + c.cpu_mixed_zone_ratio * m.load_avg_5m;
  double w = BlendingFactor(std::abs(m.load_avg_1m - m.load_avg_5m), stable, mixed);
  return w * m.load_avg_1m + (1 - w) * m.load_avg_5m;
}

// A non-finite or negative sub-goal (bad metrics) counts as 0; huge ones are capped.
double Sane(double v) { return std::isfinite(v) ? std::clamp(v, 0.0, kMaxGoalCu) : 0; }

// std::round and std::ceil without the library call where that is exact (non-negative values
// below 2^52, where the whole part converts exactly): the goal is computed on every metrics
// update of every VM, and libm's calls are a good part of its cost.
double Round(double v) {
  if (!(v >= 0 && v < 0x1p52)) return std::round(v);
  const double whole = static_cast<double>(static_cast<int64_t>(v));
  return v - whole >= 0.5 ? whole + 1 : whole;
}

double Ceil(double v) {
  if (!(v >= 0 && v < 0x1p52)) return std::ceil(v);
  const double whole = static_cast<double>(static_cast<int64_t>(v));
  return v > whole ? whole + 1 : whole;
}

}  // namespace

const char* SignalName(Signal s) {
  switch (s) {
    case Signal::kNone:
      return "none";
    case Signal::kCpu:
      return "cpu";
    case Signal::kMemory:
      return "memory";
    case Signal::kMemoryTotal:
      return "memoryTotal";
    case Signal::kLfc:
      return "lfc";
    case Signal::kMonitorUpscale:
      return "monitorUpscale";
    case Signal::kDeniedDownscale:
      return "deniedDownscale";
    case Signal::kStabilization:
      return "stabilization";
    case Signal::kMaxDownscaleStep:
      return "maxDownscaleStep";
    case Signal::kCurrentUsage:
      return "currentUsage";
    case Signal::kMinBound:
      return "minBound";
    case Signal::kMaxBound:
      return "maxBound";
    case Signal::kMigrating:
      return "migrating";
  }
  return "unknown";
}

double EstimateTrueWorkingSetSize(std::span<const double> series, double max_increase_factor,
                                  int initial_offset, int window_size) {
  const int w = window_size - 1;
  const int n = static_cast<int>(series.size());
  for (int t = initial_offset; t + w < n; ++t) {
    // The windows are not sampled at one instant, so a longer window can read lower.
    double before = std::max(0.0, series[t] - series[t - w]);
    double after = std::max(0.0, series[t + w] - series[t]);
    if (after > before * max_increase_factor) return series[t];
  }
  return series.empty() ? 0 : series.back();
}

double ProjectNextHighest(std::span<const double> series, double project_len) {
  if (series.empty()) return 0;
  double highest = series[0];
  for (size_t i = 1; i < series.size(); ++i) {
    double x0 = series[i - 1];
    double x1 = std::max(x0, series[i]);
    highest = std::max(highest, x1 + (x1 - x0) * project_len);
  }
  return highest;
}

Goal ComputeGoal(const ScalingConfig& c, const Resources& cu, const SystemMetrics* system,
                 const LfcMetrics* lfc) {
  Goal g;
  ComputeGoal(c, cu, system, lfc, g);
  return g;
}

void ComputeGoal(const ScalingConfig& c, const Resources& cu, const SystemMetrics* system,
                 const LfcMetrics* lfc, Goal& g) {
  // Field by field: assigning Goal{} would clear all 128 bytes with a block store first.
  g.cpu_cu.reset();
  g.memory_cu.reset();
  g.memory_total_cu.reset();
  g.lfc_cu.reset();
  g.load_average.reset();
  g.lfc_estimate_pages.reset();
  g.lfc_projected_pages.reset();
  g.decided_by = Signal::kNone;
  if (!c.enable_lfc_metrics) lfc = nullptr;
  g.has_all_metrics = system != nullptr && (!c.enable_lfc_metrics || lfc != nullptr);
  const double cu_mem = static_cast<double>(cu.memory_bytes);

  std::optional<double> wss_bytes;
  if (lfc != nullptr) {
    const std::vector<double>& wss = lfc->working_set_pages;
    // In int64, and checked as EstimateTrueWorkingSetSize requires: a config that was not
    // validated must not overflow the span it asks for, nor read before the series.
    const int64_t offset = int64_t{c.lfc_min_wait_before_downscale_minutes} - 1;
    const int64_t window = c.lfc_window_size_minutes;
    if (window >= 2 && offset >= window - 1 &&
        static_cast<int64_t>(wss.size()) >= offset + window) {
      double estimate =
          c.lfc_use_largest_window
              ? wss.back()
              : EstimateTrueWorkingSetSize(wss, kMaxAllowedIncreaseFactor, static_cast<int>(offset),
                                           static_cast<int>(window));
      // Project the growth seen up to the estimate, starting at the minimum wait.
      size_t end = offset;
      while (end < wss.size() && wss[end] <= estimate) ++end;
      double projected = ProjectNextHighest(std::span(wss.data(), end), kProjectLen);
      g.lfc_estimate_pages = estimate;
      g.lfc_projected_pages = projected;
      wss_bytes = projected * kLfcPageBytes;
      g.lfc_cu = Sane(*wss_bytes / c.lfc_to_memory_ratio / cu_mem);
    }
  }

  if (system != nullptr) {
    g.load_average = BlendedLoadAverage(c, *system);
    g.cpu_cu = Sane(*g.load_average / c.load_average_fraction_target /
                    static_cast<double>(cu.milli_cpu) * 1000);
    double mem_goal_bytes = Round(system->memory_usage_bytes / c.memory_usage_fraction_target);
    g.memory_cu = Sane(mem_goal_bytes / cu_mem);
    if (wss_bytes.has_value()) {
      double cached = std::min(*wss_bytes, system->memory_cached_bytes);
      g.memory_total_cu =
          Sane((cached + system->memory_usage_bytes) / c.memory_total_fraction_target / cu_mem);
    }
  }

  // CPU is rounded "for historical compatibility"; the others round up. The first of equal
  // parts decides, in this order.
  double best = -1;
  auto part = [&](const std::optional<double>& value, Signal signal) {
    if (value && *value > best) {
      best = *value;
      g.decided_by = signal;
    }
  };
  if (g.cpu_cu) part(Round(*g.cpu_cu), Signal::kCpu);
  part(g.memory_cu, Signal::kMemory);
  part(g.memory_total_cu, Signal::kMemoryTotal);
  part(g.lfc_cu, Signal::kLfc);
  g.goal_cu = best < 0 ? 0 : static_cast<uint32_t>(Ceil(best));
}

}  // namespace autoscale::core
