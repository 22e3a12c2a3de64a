#include "autoscale/core/config.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace autoscale::core {
namespace {

absl::Status OutOfRange(absl::string_view what, absl::string_view field, const std::string& rule,
                        const std::string& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": ", field, " must be ", rule, ", got ", got));
}

std::string Str(double v) { return absl::StrFormat("%g", v); }

// lo < v < hi (open) or lo < v <= hi (half-open) for doubles; NaN and infinities fail.
absl::Status CheckFraction(const char* field, double v, double hi, bool hi_inclusive) {
  bool ok = std::isfinite(v) && v > 0 && (hi_inclusive ? v <= hi : v < hi);
  if (ok) return absl::OkStatus();
  return OutOfRange("scaling config", field,
                    absl::StrFormat("in (0, %g%s", hi, hi_inclusive ? "]" : ")"), Str(v));
}

}  // namespace

absl::Status ValidateScalingConfig(const ScalingConfig& c) {
  // Zero targets would divide by zero; the reference's [0, x) ranges allow it, ours do not.
  if (auto s = CheckFraction("loadAverageFractionTarget", c.load_average_fraction_target, 2, false);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckFraction("memoryUsageFractionTarget", c.memory_usage_fraction_target, 1, false);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckFraction("memoryTotalFractionTarget", c.memory_total_fraction_target, 1, false);
      !s.ok()) {
    return s;
  }
  if (auto s = CheckFraction("lfcToMemoryRatio", c.lfc_to_memory_ratio, 1, true); !s.ok()) {
    return s;
  }
  // Each of the two is bounded by the 60 windows before they are added: their sum then cannot
  // overflow (2147483647 + 2 did, and passed).
  if (c.lfc_window_size_minutes < 2 || c.lfc_window_size_minutes > 60) {
    return OutOfRange("scaling config", "lfcWindowSizeMinutes", "in [2, 60]",
                      absl::StrCat(c.lfc_window_size_minutes));
  }
  if (c.lfc_min_wait_before_downscale_minutes < c.lfc_window_size_minutes ||
      c.lfc_min_wait_before_downscale_minutes > 60) {
    return OutOfRange(
        "scaling config", "lfcMinWaitBeforeDownscaleMinutes",
        absl::StrCat("in [lfcWindowSizeMinutes (", c.lfc_window_size_minutes, "), 60]"),
        absl::StrCat(c.lfc_min_wait_before_downscale_minutes));
  }
  // The LFC goal needs minWait + windowSize - 1 windows, and there are 60 (1..60 minutes).
  if (c.lfc_min_wait_before_downscale_minutes + c.lfc_window_size_minutes - 1 > 60) {
    return OutOfRange(
        "scaling config", "lfcMinWaitBeforeDownscaleMinutes",
        absl::StrCat("<= ", 61 - c.lfc_window_size_minutes, " (with lfcWindowSizeMinutes ",
                     c.lfc_window_size_minutes,
                     ", the LFC goal needs minWait + windowSize - 1 of the 60 windows)"),
        absl::StrCat(c.lfc_min_wait_before_downscale_minutes));
  }
  for (auto [field, v] : {std::pair{"cpuStableZoneRatio", c.cpu_stable_zone_ratio},
                          std::pair{"cpuMixedZoneRatio", c.cpu_mixed_zone_ratio}}) {
    if (!std::isfinite(v) || v < 0 || v > 100) {
      return OutOfRange("scaling config", field, "in [0, 100]", Str(v));
    }
  }
  if (c.max_downscale_step_cu > kMaxCu) {
    return OutOfRange("scaling config", "maxDownscaleStepCu", absl::StrCat("<= ", kMaxCu),
                      absl::StrCat(c.max_downscale_step_cu));
  }
  if (c.downscale_stabilization_window < absl::ZeroDuration() ||
      c.downscale_stabilization_window > absl::Hours(24)) {
    return OutOfRange("scaling config", "downscaleStabilizationWindow", "in [0s, 24h]",
                      absl::FormatDuration(c.downscale_stabilization_window));
  }
  return absl::OkStatus();
}

}  // namespace autoscale::core
