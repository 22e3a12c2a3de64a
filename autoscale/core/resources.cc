#include "autoscale/core/resources.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace autoscale::core {

Resources Resources::Max(const Resources& a, const Resources& b) {
  return {std::max(a.milli_cpu, b.milli_cpu), std::max(a.memory_bytes, b.memory_bytes)};
}

Resources Resources::Min(const Resources& a, const Resources& b) {
  return {std::min(a.milli_cpu, b.milli_cpu), std::min(a.memory_bytes, b.memory_bytes)};
}

Resources Resources::SaturatingSub(const Resources& a, const Resources& b) {
  return {std::max<int64_t>(0, a.milli_cpu - b.milli_cpu),
          std::max<int64_t>(0, a.memory_bytes - b.memory_bytes)};
}

std::string Resources::ToString() const {
  std::string mem;
  int64_t m = memory_bytes;
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (unit < 4 && m != 0 && m % 1024 == 0) {
    m /= 1024;
    ++unit;
  }
  return absl::StrCat(milli_cpu, "m/", m, units[unit]);
}

int64_t WholeComputeUnits(const Resources& r, const Resources& cu) {
  return std::min(r.milli_cpu / cu.milli_cpu, r.memory_bytes / cu.memory_bytes);
}

}  // namespace autoscale::core
