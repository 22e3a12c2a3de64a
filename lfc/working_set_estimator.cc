#include "lfc/working_set_estimator.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace autoscale::lfc {
namespace {

// Ertl's sigma and tau series (Algorithm 6 of the paper), summed until they stop changing.
double Sigma(double x) {
  if (x == 1) return std::numeric_limits<double>::infinity();
  double y = 1;
  double z = x;
  double previous;
  do {
    x *= x;
    previous = z;
    z += x * y;
    y += y;
  } while (z != previous);
  return z;
}

double Tau(double x) {
  if (x == 0 || x == 1) return 0;
  double y = 1;
  double z = 1 - x;
  double previous;
  do {
    x = std::sqrt(x);
    previous = z;
    y *= 0.5;
    z -= (1 - x) * (1 - x) * y;
  } while (z != previous);
  return z / 3;
}

// Query times far outside any real clock are clamped so that age arithmetic cannot overflow.
int64_t QueryTick(absl::Time now) {
  constexpr int64_t kLimit = int64_t{1} << 60;
  return std::clamp(absl::ToUnixSeconds(now), -kLimit, kLimit);
}

}  // namespace

WorkingSetEstimator::WorkingSetEstimator(Options options)
    : precision_(options.precision), registers_(size_t{1} << options.precision) {
  CHECK(options.precision >= 4 && options.precision <= 18)
      << "WorkingSetEstimator precision must be in [4, 18], got " << options.precision;
}

bool WorkingSetEstimator::Rebase(int64_t tick) {
  if (tick < base_ || tick == std::numeric_limits<int64_t>::max()) return false;
  // Keep what the longest window can still see: accesses in (tick - horizon, tick].
  const int64_t new_base = tick - (kHorizonSeconds - 1);
  for (Register& reg : registers_) {
    for (uint16_t& stamp : reg.stamps) {
      if (stamp == 0) continue;
      const int64_t second = base_ + stamp - 1;
      stamp = second < new_base ? 0 : static_cast<uint16_t>(second - new_base + 1);
    }
  }
  base_ = new_base;
  return true;
}

double WorkingSetEstimator::EstimateFromHistogram(
    const std::array<int, kMaxRank + 1>& histogram) const {
  // Registers take values 0..q+1 with q + 1 = kMaxRank (the cap).
  const double m = static_cast<double>(registers_.size());
  double z = m * Tau(1 - histogram[kMaxRank] / m);
  for (int k = kMaxRank - 1; k >= 1; --k) z = 0.5 * (z + histogram[k]);
  z += m * Sigma(histogram[0] / m);
  return m * m / (2 * std::log(2.0)) / z;
}

absl::StatusOr<double> WorkingSetEstimator::Estimate(absl::Duration window, absl::Time now) const {
  const int64_t seconds = absl::ToInt64Seconds(window);
  if (seconds < 1 || window > kMaxWindow) {
    return absl::InvalidArgumentError(
        absl::StrCat("working-set estimate: window must be between 1s and ",
                     absl::FormatDuration(kMaxWindow), ", got ", absl::FormatDuration(window)));
  }
  // A rank counts when its second is after now - window.
  const int64_t oldest = QueryTick(now) - seconds + 1;
  std::array<int, kMaxRank + 1> histogram{};
  for (const Register& reg : registers_) {
    int value = 0;
    for (int rank = kMaxRank; rank >= 1; --rank) {
      const uint16_t stamp = reg.stamps[rank - 1];
      if (stamp != 0 && base_ + stamp - 1 >= oldest) {
        value = rank;
        break;
      }
    }
    ++histogram[value];
  }
  return EstimateFromHistogram(histogram);
}

std::vector<double> WorkingSetEstimator::MinuteWindows(absl::Time now) const {
  const int64_t now_tick = QueryTick(now);
  // delta[w][v]: change, from window w-1 to window w, in the number of registers whose value is
  // v. A register's value as a function of the window is a staircase, so it adds O(ranks) steps
  // instead of one count per window.
  std::vector<std::array<int, kMaxRank + 1>> delta(kMinuteWindows + 1);
  for (const Register& reg : registers_) {
    int until = kMinuteWindows;  // the windows [w, until) are settled by higher ranks
    for (int rank = kMaxRank; rank >= 1 && until > 0; --rank) {
      const uint16_t stamp = reg.stamps[rank - 1];
      if (stamp == 0) continue;
      const int64_t age = std::max<int64_t>(0, now_tick - (base_ + stamp - 1));
      if (age >= int64_t{60} * kMinuteWindows) continue;
      const int first_window = static_cast<int>(age / 60);  // window index (minutes - 1)
      if (first_window >= until) continue;
      ++delta[first_window][rank];
      --delta[until][rank];
      until = first_window;
    }
    if (until > 0) {
      ++delta[0][0];
      --delta[until][0];
    }
  }
  std::vector<double> windows(kMinuteWindows);
  std::array<int, kMaxRank + 1> histogram{};
  for (int w = 0; w < kMinuteWindows; ++w) {
    for (int v = 0; v <= kMaxRank; ++v) histogram[v] += delta[w][v];
    windows[w] = EstimateFromHistogram(histogram);
  }
  return windows;
}

double WorkingSetEstimator::StandardError() const {
  return 1.04 / std::sqrt(static_cast<double>(registers_.size()));
}

size_t WorkingSetEstimator::MemoryBytes() const {
  return sizeof(*this) + registers_.capacity() * sizeof(Register);
}

}  // namespace autoscale::lfc
