// Time as a seam. Code that waits or timestamps takes a `Clock&`, so tests and the simulator can
// run it on a `ManualClock` and never sleep.
//
//   void Runner::Tick(Clock& clock) {
//     if (clock.Now() >= next_request_) ...
//   }
//
//   ManualClock clock;              // starts at kManualClockEpoch
//   clock.Advance(absl::Seconds(5));
#pragma once

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace autoscale {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Blocks the caller for `d` of this clock's time.
  virtual void SleepFor(absl::Duration d) = 0;

  // The process-wide wall clock. Never null; do not delete.
  static Clock& Real();
};

// A fixed, arbitrary start for manual clocks, so recorded scenarios replay identically.
inline constexpr absl::Time kManualClockEpoch = absl::FromUnixSeconds(1'700'000'000);

// A clock that moves only when told to. Thread-safe. `SleepFor` advances the clock instead of
// blocking (simulated time), so single-threaded code under test never stalls.
class ManualClock : public Clock {
 public:
  explicit ManualClock(absl::Time start = kManualClockEpoch) : now_(start) {}

  absl::Time Now() const override;
  void SleepFor(absl::Duration d) override { Advance(d); }

  // Moves the clock forward by `d` (must not be negative).
  void Advance(absl::Duration d);
  // Moves the clock to `t` (must not be earlier than Now()).
  void AdvanceTo(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace autoscale
