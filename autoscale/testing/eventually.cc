#include "autoscale/testing/eventually.h"

#include "absl/time/clock.h"

namespace autoscale::testing {

bool Eventually(const std::function<bool()>& done, absl::Duration timeout) {
  for (const absl::Time end = absl::Now() + timeout; absl::Now() < end;) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

}  // namespace autoscale::testing
