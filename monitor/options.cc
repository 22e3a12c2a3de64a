#include "monitor/options.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "autoscale/base/proto_duration.h"

namespace autoscale::monitor {
namespace {

absl::Status Invalid(const char* field, const std::string& rule, const std::string& got) {
  return absl::InvalidArgumentError(
      absl::StrCat("monitor config: ", field, " must be ", rule, ", got ", got));
}

}  // namespace

absl::StatusOr<MonitorOptions> OptionsFromProto(const api::v1::MonitorConfig& c) {
  MonitorOptions o;
  if (c.threshold_fraction() != 0) {
    if (!(c.threshold_fraction() > 0 && c.threshold_fraction() <= 1)) {
      return Invalid("thresholdFraction", "in (0, 1]", absl::StrCat(c.threshold_fraction()));
    }
    o.threshold_fraction = c.threshold_fraction();
  }
  if (c.system_reserve_bytes() < 0) {
    return Invalid("systemReserveBytes", ">= 0", absl::StrCat(c.system_reserve_bytes()));
  }
  if (c.system_reserve_bytes() > 0) o.system_reserve_bytes = c.system_reserve_bytes();
  if (c.downscale_headroom_bytes() < 0) {
    return Invalid("downscaleHeadroomBytes", ">= 0", absl::StrCat(c.downscale_headroom_bytes()));
  }
  if (c.downscale_headroom_bytes() > 0) o.downscale_headroom_bytes = c.downscale_headroom_bytes();
  struct {
    const char* name;
    const google::protobuf::Duration& value;
    absl::Duration& out;
  } durations[] = {
      {"upscaleRequestMinInterval", c.upscale_request_min_interval(),
       o.upscale_request_min_interval},
      {"sampleInterval", c.sample_interval(), o.sample_interval},
  };
  for (auto& d : durations) {
    absl::Duration v = FromProto(d.value);
    if (v < absl::ZeroDuration()) return Invalid(d.name, "> 0", absl::FormatDuration(v));
    if (v > absl::ZeroDuration()) d.out = v;
  }
  if (c.samples_averaged() > 1000) {
    return Invalid("samplesAveraged", "<= 1000", absl::StrCat(c.samples_averaged()));
  }
  if (c.samples_averaged() > 0) o.samples_averaged = static_cast<int>(c.samples_averaged());
  o.min_samples = std::min(o.min_samples, o.samples_averaged);
  o.max_sample_age = std::max(o.max_sample_age, 3 * o.sample_interval);
  return o;
}

int64_t ThresholdBytes(int64_t memory_bytes, const MonitorOptions& o) {
  int64_t usable =
      std::max<int64_t>(0, memory_bytes - o.kernel_overhead_bytes - o.system_reserve_bytes);
  return static_cast<int64_t>(std::floor(static_cast<double>(usable) * o.threshold_fraction));
}

}  // namespace autoscale::monitor
