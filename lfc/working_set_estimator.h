// How many distinct pages were touched in the last 1 second to 60 minutes: a sliding-window
// HyperLogLog (Chabchoub & Hebrail), the working-set signal of the scaling goal.
//
// Every access is `Add`ed with its time. At any moment `MinuteWindows(now)` returns the 60 numbers
// the core's LFC goal consumes (element i: distinct pages touched in the last i+1 minutes), and
// `Estimate(window, now)` answers for any window of whole seconds up to 60 minutes.
//
//   autoscale::lfc::WorkingSetEstimator wss;
//   wss.Add(page_number, clock.Now());                        // on every page access
//   std::vector<double> windows = wss.MinuteWindows(clock.Now());  // windows[4]: last 5 minutes
//
// How it works. A HyperLogLog sketch hashes each page to one of m = 2^precision registers and a
// rank (one plus the leading zero bits of the rest of the hash); a register holds the largest rank
// it saw, and the cardinality follows from the registers. To ask about any window, each register
// keeps, for every rank, the last second that rank was seen; a window's register value is then the
// largest rank seen inside it. Ranks are capped at 24, so the sketch works as one over a
// (precision + 23)-bit hash: 2^38 at the default, far more pages than any cache sees. The
// cardinality comes from the register histogram with Ertl's improved estimator ("New cardinality
// estimation algorithms for HyperLogLog sketches", 2017), which treats capped registers exactly
// and needs no bias tables or range switches.
//
// Accuracy and cost. The relative standard error is 1.04 / sqrt(m). Neon's LFC uses m = 1024
// (3.3 %); the default here is m = 32768 (0.57 %), so an estimate of 100,000 pages or more is
// within 2 % (3.5 standard errors) but for about one time in 2,000. Timestamps are 16-bit seconds
// relative to a base that moves forward (every ~17 hours one pass drops everything older than 60
// minutes), so a register is 24 ranks x 2 bytes = 48 bytes: 1.5 MiB at the default precision,
// where Neon stores 8-byte timestamps for 1024 x 23 ranks (184 KiB). An `Add` hashes and writes
// one 16-bit slot.
//
// Time is whole seconds (`absl::ToUnixSeconds`); an access at second s is in a window of W seconds
// at second n when n - s < W. Times need not be monotonic: an access later than the query time
// counts in every window, and one more than 60 minutes older than the latest access seen may be
// dropped; infinite times are ignored. Not thread-safe; copyable (a copy is a consistent snapshot
// to query elsewhere).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace autoscale::lfc {

class WorkingSetEstimator {
 public:
  // The longest window that can be asked about, and the number of minute windows.
  static constexpr absl::Duration kMaxWindow = absl::Minutes(60);
  static constexpr int kMinuteWindows = 60;

  struct Options {
    // log2 of the number of registers, in [4, 18]. Standard error 1.04 / 2^(precision / 2);
    // memory 48 bytes << precision.
    int precision = 15;
  };

  WorkingSetEstimator() : WorkingSetEstimator(Options{}) {}
  // CHECK-fails when options.precision is out of range (a programmer error).
  explicit WorkingSetEstimator(Options options);

  // Records an access to the page identified by `page` (any 64-bit id; distinct pages must have
  // distinct ids, e.g. a hash of relation, fork and block number) at time `now`.
  void Add(uint64_t page, absl::Time now) {
    const int64_t tick = absl::ToUnixSeconds(now);
    // Unsigned: a tick before base_ wraps to a huge offset and takes the slow path too.
    uint64_t offset = static_cast<uint64_t>(tick) - static_cast<uint64_t>(base_);
    if (offset >= kStampRange) [[unlikely]] {
      if (!Rebase(tick)) return;
      offset = static_cast<uint64_t>(tick - base_);
    }
    const uint64_t hash = Mix(page);
    const uint64_t rest = hash << precision_;
    const int rank = (rest >> (64 - kMaxRank + 1)) == 0 ? kMaxRank : std::countl_zero(rest) + 1;
    registers_[hash >> (64 - precision_)].stamps[rank - 1] = static_cast<uint16_t>(offset + 1);
  }

  // Distinct pages accessed in the `window` before `now` (whole seconds; sub-second parts are
  // dropped). InvalidArgument unless 1 s <= window <= kMaxWindow.
  absl::StatusOr<double> Estimate(absl::Duration window, absl::Time now) const;

  // kMinuteWindows estimates: element i is the distinct pages of the last i+1 minutes. The same
  // numbers as Estimate(Minutes(i + 1), now), computed in one pass; non-decreasing.
  std::vector<double> MinuteWindows(absl::Time now) const;

  // 1.04 / sqrt(number of registers).
  double StandardError() const;
  // Heap and object bytes held.
  size_t MemoryBytes() const;

 private:
  static constexpr int kMaxRank = 24;
  // Stamps are 1..kStampRange (tick - base_ + 1); 0 marks a rank never seen since base_.
  static constexpr uint64_t kStampRange = 65535;
  static constexpr int64_t kHorizonSeconds = 3600;

  struct Register {
    std::array<uint16_t, kMaxRank> stamps{};
  };

  // splitmix64's finalizer: a bijection with full avalanche, so distinct ids never collide.
  static uint64_t Mix(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }

  // Moves base_ so that `tick` has a stamp, forgetting what is older than the horizon. Returns
  // false (and changes nothing) when `tick` is itself older than anything kept, or infinite.
  bool Rebase(int64_t tick);
  // Cardinality from a histogram of register values 0..kMaxRank.
  double EstimateFromHistogram(const std::array<int, kMaxRank + 1>& histogram) const;

  int precision_;
  // Unix second of stamp 1. Every live stamp decodes to a second in [base_, base_ + kStampRange).
  int64_t base_ = 0;
  std::vector<Register> registers_;
};

}  // namespace autoscale::lfc
