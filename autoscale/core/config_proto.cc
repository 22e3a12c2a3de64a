#include "autoscale/core/config_proto.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "autoscale/base/proto_duration.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::core {
namespace {

absl::Status OutOfRange(absl::string_view what, absl::string_view field, const std::string& rule,
                        const std::string& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": ", field, " must be ", rule, ", got ", got));
}

absl::Status ApplyDuration(const google::protobuf::Duration& d, const char* field,
                           absl::Duration& out) {
  if (d.seconds() < 0 || d.nanos() < 0) {
    return OutOfRange("agent timings", field, "> 0", absl::StrCat(d.seconds(), "s"));
  }
  absl::Duration value = FromProto(d);
  if (value > kMaxTiming) {
    return OutOfRange("agent timings", field, absl::StrCat("<= ", absl::FormatDuration(kMaxTiming)),
                      absl::FormatDuration(value));
  }
  if (value == absl::ZeroDuration()) return absl::OkStatus();  // unset: keep the default
  out = value;
  return absl::OkStatus();
}

void Apply(const api::v1::ScalingConfig& p, ScalingConfig& c) {
  if (p.has_load_average_fraction_target()) {
    c.load_average_fraction_target = p.load_average_fraction_target();
  }
  if (p.has_memory_usage_fraction_target()) {
    c.memory_usage_fraction_target = p.memory_usage_fraction_target();
  }
  if (p.has_memory_total_fraction_target()) {
    c.memory_total_fraction_target = p.memory_total_fraction_target();
  }
  if (p.has_enable_lfc_metrics()) c.enable_lfc_metrics = p.enable_lfc_metrics();
  if (p.has_lfc_use_largest_window()) c.lfc_use_largest_window = p.lfc_use_largest_window();
  if (p.has_lfc_to_memory_ratio()) c.lfc_to_memory_ratio = p.lfc_to_memory_ratio();
  if (p.has_lfc_window_size_minutes()) c.lfc_window_size_minutes = p.lfc_window_size_minutes();
  if (p.has_lfc_min_wait_before_downscale_minutes()) {
    c.lfc_min_wait_before_downscale_minutes = p.lfc_min_wait_before_downscale_minutes();
  }
  if (p.has_cpu_stable_zone_ratio()) c.cpu_stable_zone_ratio = p.cpu_stable_zone_ratio();
  if (p.has_cpu_mixed_zone_ratio()) c.cpu_mixed_zone_ratio = p.cpu_mixed_zone_ratio();
  if (p.has_downscale_stabilization_window()) {
    c.downscale_stabilization_window = FromProto(p.downscale_stabilization_window());
  }
  if (p.has_max_downscale_step_cu()) c.max_downscale_step_cu = p.max_downscale_step_cu();
}

}  // namespace

absl::StatusOr<ScalingConfig> ResolveScalingConfig(const api::v1::ScalingConfig& defaults,
                                                   const api::v1::ScalingConfig& overrides) {
  ScalingConfig config;
  Apply(defaults, config);
  Apply(overrides, config);
  if (absl::Status s = ValidateScalingConfig(config); !s.ok()) return s;
  return config;
}

absl::StatusOr<Timings> ResolveTimings(const api::v1::AgentTimings& p) {
  Timings t;
  struct Field {
    const char* name;
    const google::protobuf::Duration& value;
    absl::Duration& out;
  };
  const Field fields[] = {
      {"schedulerRequestAtLeastEvery", p.scheduler_request_at_least_every(),
       t.scheduler_request_at_least_every},
      {"schedulerRetryFailedRequest", p.scheduler_retry_failed_request(),
       t.scheduler_retry_failed_request},
      {"schedulerRetryDeniedUpscale", p.scheduler_retry_denied_upscale(),
       t.scheduler_retry_denied_upscale},
      {"schedulerRequestTimeout", p.scheduler_request_timeout(), t.scheduler_request_timeout},
      {"monitorResponseTimeout", p.monitor_response_timeout(), t.monitor_response_timeout},
      {"monitorRetryFailedRequest", p.monitor_retry_failed_request(),
       t.monitor_retry_failed_request},
      {"monitorRetryDeniedDownscale", p.monitor_retry_denied_downscale(),
       t.monitor_retry_denied_downscale},
      {"monitorRequestedUpscaleValid", p.monitor_requested_upscale_valid(),
       t.monitor_requested_upscale_valid},
      {"vmRequestTimeout", p.vm_request_timeout(), t.vm_request_timeout},
      {"vmRetryFailedRequest", p.vm_retry_failed_request(), t.vm_retry_failed_request},
  };
  for (const Field& f : fields) {
    if (absl::Status s = ApplyDuration(f.value, f.name, f.out); !s.ok()) return s;
  }
  return t;
}

absl::StatusOr<Resources> ComputeUnitFromProto(const api::v1::ComputeUnit& cu, const char* field) {
  if (cu.milli_cpu() <= 0 || cu.milli_cpu() > kMaxComputeUnitMilliCpu) {
    return OutOfRange("compute unit", absl::StrCat(field, ".milliCpu"),
                      absl::StrCat("in [1, ", kMaxComputeUnitMilliCpu, "]"),
                      absl::StrCat(cu.milli_cpu()));
  }
  if (cu.memory_bytes() <= 0 || cu.memory_bytes() > kMaxComputeUnitMemoryBytes) {
    return OutOfRange("compute unit", absl::StrCat(field, ".memoryBytes"),
                      absl::StrCat("in [1, ", kMaxComputeUnitMemoryBytes, "]"),
                      absl::StrCat(cu.memory_bytes()));
  }
  return Resources{cu.milli_cpu(), cu.memory_bytes()};
}

absl::StatusOr<Bounds> BoundsFromProto(const api::v1::Bounds& b, const char* field) {
  if (b.min_cu() < 1) {
    return OutOfRange("bounds", absl::StrCat(field, ".minCu"), ">= 1", absl::StrCat(b.min_cu()));
  }
  if (b.max_cu() < b.min_cu() || b.max_cu() > kMaxCu) {
    return OutOfRange("bounds", absl::StrCat(field, ".maxCu"),
                      absl::StrCat("in [minCu (", b.min_cu(), "), ", kMaxCu, "]"),
                      absl::StrCat(b.max_cu()));
  }
  return Bounds{b.min_cu(), b.max_cu()};
}

absl::StatusOr<Resources> ResourcesFromProto(const api::v1::Resources& r, const char* field) {
  if (r.milli_cpu() < 0) {
    return OutOfRange("resources", absl::StrCat(field, ".milliCpu"), ">= 0",
                      absl::StrCat(r.milli_cpu()));
  }
  if (r.memory_bytes() < 0) {
    return OutOfRange("resources", absl::StrCat(field, ".memoryBytes"), ">= 0",
                      absl::StrCat(r.memory_bytes()));
  }
  return Resources{r.milli_cpu(), r.memory_bytes()};
}

api::v1::Resources ToProto(const Resources& r) {
  api::v1::Resources p;
  p.set_milli_cpu(r.milli_cpu);
  p.set_memory_bytes(r.memory_bytes);
  return p;
}

namespace {

absl::Status FiniteNonNegative(const char* field, double v) {
  if (std::isfinite(v) && v >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("metrics: ", field, " must be a finite number >= 0, got ", v));
}

}  // namespace

absl::StatusOr<SystemMetrics> SystemMetricsFromProto(const api::v1::Metrics& m) {
  RETURN_IF_ERROR(FiniteNonNegative("loadAvg1m", m.load_avg_1m()));
  RETURN_IF_ERROR(FiniteNonNegative("loadAvg5m", m.load_avg_5m()));
  RETURN_IF_ERROR(FiniteNonNegative("memoryUsageBytes", m.memory_usage_bytes()));
  RETURN_IF_ERROR(FiniteNonNegative("memoryCachedBytes", m.memory_cached_bytes()));
  return SystemMetrics{m.load_avg_1m(), m.load_avg_5m(),
                       static_cast<double>(m.memory_usage_bytes()),
                       static_cast<double>(m.memory_cached_bytes())};
}

absl::StatusOr<LfcMetrics> LfcMetricsFromProto(const api::v1::Metrics& m) {
  if (m.lfc_working_set_pages_size() > 60) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: lfcWorkingSetPages has ",
                                                   m.lfc_working_set_pages_size(),
                                                   " windows; at most 60 (1 to 60 minutes)"));
  }
  LfcMetrics lfc;
  for (int i = 0; i < m.lfc_working_set_pages_size(); ++i) {
    const double v = m.lfc_working_set_pages(i);
    if (!std::isfinite(v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("metrics: lfcWorkingSetPages[", i,
                                                     "] must be a finite number >= 0, got ", v));
    }
    lfc.working_set_pages.push_back(v);
  }
  return lfc;
}

}  // namespace autoscale::core
