#include "autoscale/core/resources.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace autoscale::core {

namespace {

int64_t SaturatingMul(int64_t a, int64_t b) {
  int64_t out = 0;
  if (!__builtin_mul_overflow(a, b, &out)) return out;
  return (a < 0) != (b < 0) ? std::numeric_limits<int64_t>::min()
                            : std::numeric_limits<int64_t>::max();
}

}  // namespace

Resources Resources::operator*(int64_t n) const {
  return {SaturatingMul(milli_cpu, n), SaturatingMul(memory_bytes, n)};
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

absl::StatusOr<Resources> ParseResources(std::string_view text, std::string_view what) {
  const absl::string_view in(text.data(), text.size());
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat(absl::string_view(what.data(), what.size()), ": \"", in, "\" ", why,
                     " (expected <milli-CPU>m/<memory>, e.g. 250m/1GiB)"));
  };
  std::vector<absl::string_view> parts = absl::StrSplit(in, '/');
  if (parts.size() != 2) return bad("has no single '/'");
  absl::string_view cpu = parts[0], mem = parts[1];
  Resources r;
  if (!absl::ConsumeSuffix(&cpu, "m") || !absl::SimpleAtoi(cpu, &r.milli_cpu) || r.milli_cpu < 0) {
    return bad("has no milli-CPU count before 'm'");
  }
  int64_t scale = 1;
  const std::pair<const char*, int64_t> units[] = {
      {"TiB", int64_t{1} << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}};
  for (const auto& [suffix, factor] : units) {
    if (absl::ConsumeSuffix(&mem, suffix)) {
      scale = factor;
      break;
    }
  }
  int64_t n;
  if (!absl::SimpleAtoi(mem, &n) || n < 0 || n > std::numeric_limits<int64_t>::max() / scale) {
    return bad("has no valid memory amount");
  }
  r.memory_bytes = n * scale;
  return r;
}

}  // namespace autoscale::core
