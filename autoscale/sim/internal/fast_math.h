// Exact stand-ins for library calls the simulator makes for every VM at every step: the same
// results as absl::ToDoubleSeconds, std::llround and std::floor on the values it uses, without
// a call into libabsl or libm (they are out of line; a day of a large fleet makes billions of
// these calls). Outside the ranges where the shortcut is exact, they call the library.
// workload_test compares them with the library on edge and random values.
#pragma once

#include <cmath>
#include <cstdint>

#include "absl/time/time.h"

namespace autoscale::sim {

// absl::ToDoubleSeconds(d). For whole nanoseconds below 2^51 (26 days) absl divides the exact
// tick count by the exact ticks per second, so the correctly rounded quotient ns / 1e9 is the
// same number.
inline double ToSeconds(absl::Duration d) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  if (ns >= 0 && ns < (int64_t{1} << 51) && absl::Nanoseconds(ns) == d) {
    return static_cast<double>(ns) / 1e9;
  }
  return absl::ToDoubleSeconds(d);
}

// absl::ToDoubleNanoseconds(d). absl divides the tick count (a quarter of a nanosecond) by 4;
// for whole nanoseconds below 2^51 both are exact, so the quotient is the count itself.
inline double ToNanoseconds(absl::Duration d) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  if (ns >= 0 && ns < (int64_t{1} << 51) && absl::Nanoseconds(ns) == d) {
    return static_cast<double>(ns);
  }
  return absl::ToDoubleNanoseconds(d);
}

// std::llround(x) (halves away from zero).
inline int64_t RoundToInt(double x) {
  if (x >= 0 && x < 0x1p52) {
    const int64_t whole = static_cast<int64_t>(x);
    return x - static_cast<double>(whole) >= 0.5 ? whole + 1 : whole;
  }
  return std::llround(x);
}

// std::floor(x).
inline double Floor(double x) {
  if (x >= 0 && x < 0x1p52) return static_cast<double>(static_cast<int64_t>(x));
  return std::floor(x);
}

}  // namespace autoscale::sim
