// How large the Local File Cache (LFC) should be for a VM with a given amount of memory.
//
// The LFC lives in a local file that is expected to stay in the guest's page cache, so its size
// follows the VM's memory. The default formula is the one of the project's issue:
//
//   size = min(memory_fraction * memory, (memory - min_remaining) / (1 + spread_factor))
//        = min(0.75 * memory, (memory - 640 MiB) / 1.1)
//
// rounded down to whole MiB, 0 when memory <= min_remaining, and never above `max_bytes`.
// Neon's vm-monitor (filecache.rs) uses the same shape with `min_remaining` = 256 MiB; we default
// to 640 MiB, which leaves room for Postgres, the monitor and the kernel on small VMs (a 1 GiB VM
// gets a 349 MiB cache instead of 698 MiB). Set `min_remaining_bytes = 256 << 20` for Neon's
// numbers.
//
//   autoscale::lfc::SizingConfig config;          // the defaults above
//   config.max_bytes = 8ull << 30;                // like neon.max_file_cache_size
//   RETURN_IF_ERROR(autoscale::lfc::ValidateSizingConfig(config));
//   uint64_t bytes = autoscale::lfc::CacheSizeBytes(4ull << 30, config);  // 3 GiB
#pragma once

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "autoscale/base/units.h"

namespace autoscale::lfc {

// The constants of the sizing formula. Fractions are plain ratios (0.75 = 75 %).
struct SizingConfig {
  // At most this fraction of memory goes to the cache (Neon: resource_multiplier). In [0, 1].
  double memory_fraction = 0.75;
  // Memory that is never given to the cache (Neon: min_remaining_after_cache, 256 MiB there).
  uint64_t min_remaining_bytes = 640 * kMiB;
  // What is left after min_remaining is divided by (1 + spread_factor). >= 0.
  double spread_factor = 0.1;
  // Upper bound on the result (Neon: neon.max_file_cache_size). No bound by default.
  uint64_t max_bytes = std::numeric_limits<uint64_t>::max();
};

// InvalidArgument naming the field when a fraction is out of range or not a number.
absl::Status ValidateSizingConfig(const SizingConfig& config);

// The cache size in bytes for a VM with `memory_bytes` of memory: a whole number of MiB, 0 if the
// memory does not exceed `min_remaining_bytes`. `config` must be valid (see above); computed in
// double precision, so a result exactly on a MiB boundary may round down by one MiB.
uint64_t CacheSizeBytes(uint64_t memory_bytes, const SizingConfig& config = {});

}  // namespace autoscale::lfc
