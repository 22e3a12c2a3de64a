// Resources: an amount of vCPU (thousandths) and memory (bytes), the unit every part of the
// library counts in. Compute units (CU) and VM bounds are expressed with it too.
//
//   Resources cu{.milli_cpu = 250, .memory_bytes = 1 << 30};
//   Resources four = cu * 4;                     // 1000m / 4 GiB
//   if (target.AnyGreaterThan(permit)) ...       // a field would grow past the permit
//   ASSIGN_OR_RETURN(Resources cu, ParseResources("250m/1GiB", "--compute_unit"));
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace autoscale::core {

struct Resources {
  int64_t milli_cpu = 0;
  int64_t memory_bytes = 0;

  friend bool operator==(const Resources&, const Resources&) = default;

  Resources operator+(const Resources& o) const {
    return {milli_cpu + o.milli_cpu, memory_bytes + o.memory_bytes};
  }
  Resources operator-(const Resources& o) const {
    return {milli_cpu - o.milli_cpu, memory_bytes - o.memory_bytes};
  }
  // Saturates at the int64 limits instead of overflowing (a compute unit times a goal computed
  // from a guest's metrics); the bounds then clamp it.
  Resources operator*(int64_t n) const;

  // True if some field of *this is greater (less) than the same field of `o`.
  bool AnyGreaterThan(const Resources& o) const {
    return milli_cpu > o.milli_cpu || memory_bytes > o.memory_bytes;
  }
  bool AnyLessThan(const Resources& o) const {
    return milli_cpu < o.milli_cpu || memory_bytes < o.memory_bytes;
  }
  // True if every field is <= the same field of `o`.
  bool FitsIn(const Resources& o) const { return !AnyGreaterThan(o); }
  bool IsZero() const { return milli_cpu == 0 && memory_bytes == 0; }

  // Field-wise maximum and minimum. (Inline: the core and the simulator call these on every
  // decision.)
  static Resources Max(const Resources& a, const Resources& b) {
    return {std::max(a.milli_cpu, b.milli_cpu), std::max(a.memory_bytes, b.memory_bytes)};
  }
  static Resources Min(const Resources& a, const Resources& b) {
    return {std::min(a.milli_cpu, b.milli_cpu), std::min(a.memory_bytes, b.memory_bytes)};
  }
  // Field-wise a - b, floored at zero.
  static Resources SaturatingSub(const Resources& a, const Resources& b) {
    return {std::max<int64_t>(0, a.milli_cpu - b.milli_cpu),
            std::max<int64_t>(0, a.memory_bytes - b.memory_bytes)};
  }

  // "1250m/5GiB" (memory in the largest binary unit that divides it, else bytes).
  std::string ToString() const;
};

// The VM's range in compute units, inclusive.
struct Bounds {
  uint32_t min_cu = 0;
  uint32_t max_cu = 0;

  friend bool operator==(const Bounds&, const Bounds&) = default;
};

// How many whole compute units fit in `r`: the smaller over both resources (floor).
int64_t WholeComputeUnits(const Resources& r, const Resources& cu);

// Parses resources as operators write them (and Resources::ToString prints them):
// "<milli-CPU>m/<memory>", memory with an optional unit B, KiB, MiB, GiB or TiB ("1500m/4GiB",
// "250m/1073741824", "2000m/512MiB"). Negative or overflowing amounts are errors; `what` names
// the value in them ("--compute_unit: \"250/1GiB\" has no milli-CPU count before 'm' ...").
absl::StatusOr<Resources> ParseResources(std::string_view text, std::string_view what);

}  // namespace autoscale::core
