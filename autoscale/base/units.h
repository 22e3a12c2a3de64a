// Binary size units, in bytes, for every library and test (one home, one type: int64_t, the
// type of every byte amount in the project's APIs).
//
//   const int64_t memory = 4 * kGiB + 512 * kMiB;
#pragma once

#include <cstdint>

namespace autoscale {

inline constexpr int64_t kKiB = int64_t{1} << 10;
inline constexpr int64_t kMiB = int64_t{1} << 20;
inline constexpr int64_t kGiB = int64_t{1} << 30;
inline constexpr int64_t kTiB = int64_t{1} << 40;

}  // namespace autoscale
