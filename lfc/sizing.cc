#include "lfc/sizing.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "glog/logging.h"

namespace autoscale::lfc {

absl::Status ValidateSizingConfig(const SizingConfig& config) {
  // Written so that NaN fails too.
  if (!(config.memory_fraction >= 0 && config.memory_fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lfc sizing config: memory_fraction must be in [0, 1], got ", config.memory_fraction));
  }
  if (!(config.spread_factor >= 0 && std::isfinite(config.spread_factor))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lfc sizing config: spread_factor must be finite and >= 0, got ", config.spread_factor));
  }
  return absl::OkStatus();
}

uint64_t CacheSizeBytes(uint64_t memory_bytes, const SizingConfig& config) {
  DCHECK(ValidateSizingConfig(config).ok()) << ValidateSizingConfig(config);
  if (memory_bytes <= config.min_remaining_bytes) return 0;
  const double memory = static_cast<double>(memory_bytes);
  const double available = static_cast<double>(memory_bytes - config.min_remaining_bytes);
  const double size =
      std::min(memory * config.memory_fraction, available / (1 + config.spread_factor));
  // size <= memory_bytes (as a double, at most 2^64), so the MiB count fits; capping in MiB keeps
  // the final multiplication from overflowing.
  const uint64_t mib = static_cast<uint64_t>(size / static_cast<double>(kMiB));
  return std::min(mib, config.max_bytes / kMiB) * kMiB;
}

}  // namespace autoscale::lfc
