// Checks of a SimConfig: ValidateSimConfig (simulation.h), and against the VMs given to Create.
#include "autoscale/sim/internal/config.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/sim/internal/monitor_model.h"
#include "autoscale/sim/simulation.h"

namespace autoscale::sim {
namespace {

// The longest run (about 10 years).
constexpr absl::Duration kMaxDuration = absl::Hours(24 * 3650);

// Within the simulator's limits for CPU and memory (a node, a compute unit, a VM's largest size).
bool WithinLimits(double milli_cpu, double memory_bytes) {
  return milli_cpu <= static_cast<double>(kMaxMilliCpu) &&
         memory_bytes <= static_cast<double>(kMaxMemoryBytes);
}

absl::Status Invalid(const char* field, const std::string& rule, const std::string& got) {
  return absl::InvalidArgumentError(
      absl::StrCat("simulation config: ", field, " must be ", rule, ", got ", got));
}

bool WholeSteps(absl::Duration d, absl::Duration step) {
  return absl::IDivDuration(d, step, &d) >= 1 && d == absl::ZeroDuration();
}

}  // namespace

absl::Status ValidateSimConfig(const SimConfig& c) {
  if (c.step <= absl::ZeroDuration()) return Invalid("step", "> 0", absl::FormatDuration(c.step));
  if (!WholeSteps(c.duration, c.step)) {
    return Invalid(
        "duration",
        absl::StrCat("a positive multiple of the step (", absl::FormatDuration(c.step), ")"),
        absl::FormatDuration(c.duration));
  }
  if (!WholeSteps(c.metrics_interval, c.step)) {
    return Invalid(
        "metrics_interval",
        absl::StrCat("a positive multiple of the step (", absl::FormatDuration(c.step), ")"),
        absl::FormatDuration(c.metrics_interval));
  }
  if (c.duration / c.step > 1e9 || c.duration > kMaxDuration) {
    return Invalid("duration", "at most 10^9 steps and 3650 days",
                   absl::FormatDuration(c.duration));
  }
  if (c.threads < 0) return Invalid("threads", ">= 0", absl::StrCat(c.threads));
  if (c.nodes < 1 || c.nodes > 100000)
    return Invalid("nodes", "in [1, 100000]", absl::StrCat(c.nodes));
  const std::string limits =
      absl::StrCat("at most ", kMaxMilliCpu, " milli-CPU and ", kMaxMemoryBytes, " bytes");
  if (c.node_capacity.milli_cpu <= 0 || c.node_capacity.memory_bytes <= 0 ||
      !WithinLimits(c.node_capacity.milli_cpu, c.node_capacity.memory_bytes)) {
    return Invalid("node_capacity", "> 0 in both resources and " + limits,
                   c.node_capacity.ToString());
  }
  if (!(c.watermark > 0 && c.watermark <= 1)) {
    return Invalid("watermark", "in (0, 1]", absl::StrCat(c.watermark));
  }
  if (c.migration_check_interval <= absl::ZeroDuration()) {
    return Invalid("migration_check_interval", "> 0",
                   absl::FormatDuration(c.migration_check_interval));
  }
  if (c.compute_unit.milli_cpu <= 0 || c.compute_unit.memory_bytes <= 0) {
    return Invalid("compute_unit", "> 0 in both resources", c.compute_unit.ToString());
  }
  if (c.bounds.min_cu < 1 || c.bounds.min_cu > c.bounds.max_cu) {
    return Invalid("bounds", "1 <= min <= max",
                   absl::StrCat(c.bounds.min_cu, "..", c.bounds.max_cu));
  }
  if (const double max_cu = c.bounds.max_cu;
      !WithinLimits(static_cast<double>(c.compute_unit.milli_cpu) * max_cu,
                    static_cast<double>(c.compute_unit.memory_bytes) * max_cu)) {
    return Invalid("bounds", "such that the largest VM (compute_unit times max) is " + limits,
                   absl::StrCat(c.compute_unit.ToString(), " times ", c.bounds.max_cu));
  }
  if ((c.compute_unit * c.bounds.min_cu).AnyGreaterThan(c.node_capacity)) {
    return Invalid("bounds", "such that the smallest VM fits on a node",
                   (c.compute_unit * c.bounds.min_cu).ToString());
  }
  RETURN_IF_ERROR(Annotate(core::ValidateScalingConfig(c.scaling), "simulation config"));
  if (c.scaling.enable_lfc_metrics && !WholeSteps(c.lfc_metrics_interval, c.step)) {
    return Invalid(
        "lfc_metrics_interval",
        absl::StrCat("a positive multiple of the step (", absl::FormatDuration(c.step), ")"),
        absl::FormatDuration(c.lfc_metrics_interval));
  }
  if (!(c.lfc_new_page_share >= 0 && c.lfc_new_page_share <= 1)) {
    return Invalid("lfc_new_page_share", "in [0, 1]", absl::StrCat(c.lfc_new_page_share));
  }
  if (c.placement != InitialPlacement::kLedger && c.placement != InitialPlacement::kSpread) {
    return Invalid("placement", "kLedger or kSpread", absl::StrCat(static_cast<int>(c.placement)));
  }
  const Latencies& l = c.latencies;
  for (auto [name, d] : {std::pair{"latencies.scheduler", l.scheduler},
                         {"latencies.monitor", l.monitor},
                         {"latencies.resize", l.resize},
                         {"latencies.per_vcpu", l.per_vcpu},
                         {"latencies.per_gib", l.per_gib},
                         {"latencies.migration_setup", l.migration_setup}}) {
    if (d < absl::ZeroDuration() || d > absl::Hours(1)) {
      return Invalid(name, "in [0, 1h]", absl::FormatDuration(d));
    }
  }
  if (l.migration_bytes_per_second <= 0) {
    return Invalid("latencies.migration_bytes_per_second", "> 0",
                   absl::StrCat(l.migration_bytes_per_second));
  }
  if (!(l.jitter >= 0 && l.jitter < 1)) {
    return Invalid("latencies.jitter", "in [0, 1)", absl::StrCat(l.jitter));
  }
  const FailureRates& f = c.failures;
  for (auto [name, p] : {std::pair{"failures.scheduler", f.scheduler},
                         {"failures.vm_resize", f.vm_resize},
                         {"failures.monitor", f.monitor},
                         {"failures.migration", f.migration}}) {
    if (!(p >= 0 && p <= 1)) return Invalid(name, "in [0, 1]", absl::StrCat(p));
  }
  if (c.monitor.samples_averaged < 1 || c.monitor.samples_averaged > MonitorModel::kMaxSamples) {
    return Invalid("monitor.samples_averaged",
                   absl::StrCat("in [1, ", MonitorModel::kMaxSamples, "]"),
                   absl::StrCat(c.monitor.samples_averaged));
  }
  if (c.step > c.monitor.max_sample_age) {
    // The monitor samples at every step; a downscale check finds a sample older than this an
    // error.
    return Invalid("step",
                   absl::StrCat("at most monitor.max_sample_age (",
                                absl::FormatDuration(c.monitor.max_sample_age), ")"),
                   absl::FormatDuration(c.step));
  }
  if (c.node_series_interval < absl::ZeroDuration()) {
    return Invalid("node_series_interval", ">= 0", absl::FormatDuration(c.node_series_interval));
  }
  return absl::OkStatus();
}

absl::Status ValidateForVms(const SimConfig& config, size_t vm_count) {
  if (vm_count == 0) return absl::InvalidArgumentError("simulation: no VMs");
  if (vm_count > (size_t{1} << 31)) return absl::InvalidArgumentError("simulation: too many VMs");
  for (size_t i = 0; i < config.series_vms.size(); ++i) {
    const uint32_t v = config.series_vms[i];
    if (v >= vm_count) {
      return Invalid("series_vms", absl::StrCat("VM indices below ", vm_count), absl::StrCat(v));
    }
    if (std::find(config.series_vms.begin(), config.series_vms.begin() + i, v) !=
        config.series_vms.begin() + i) {
      return Invalid("series_vms", "distinct VM indices", absl::StrCat(v, " twice"));
    }
  }
  return absl::OkStatus();
}

}  // namespace autoscale::sim
