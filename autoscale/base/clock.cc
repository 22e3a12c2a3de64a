#include "autoscale/base/clock.h"

#include "absl/time/clock.h"
#include "glog/logging.h"

namespace autoscale {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
};

}  // namespace

Clock& Clock::Real() {
  static RealClock* clock = new RealClock;
  return *clock;
}

absl::Time ManualClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void ManualClock::Advance(absl::Duration d) {
  CHECK_GE(d, absl::ZeroDuration()) << "ManualClock cannot go back";
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void ManualClock::AdvanceTo(absl::Time t) {
  absl::MutexLock lock(&mu_);
  CHECK_GE(t, now_) << "ManualClock cannot go back";
  now_ = t;
}

}  // namespace autoscale
