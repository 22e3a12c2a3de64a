#include "autoscale/base/clock.h"

#include <thread>

#include "gtest/gtest.h"

namespace autoscale {
namespace {

TEST(ManualClock, MovesOnlyWhenTold) {
  ManualClock clock;
  EXPECT_EQ(clock.Now(), kManualClockEpoch);
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), kManualClockEpoch + absl::Seconds(5));
  clock.SleepFor(absl::Milliseconds(250));  // simulated: advances, returns at once
  EXPECT_EQ(clock.Now(), kManualClockEpoch + absl::Milliseconds(5250));
  clock.AdvanceTo(kManualClockEpoch + absl::Minutes(1));
  EXPECT_EQ(clock.Now(), kManualClockEpoch + absl::Minutes(1));
}

TEST(ManualClock, IsSafeAcrossThreads) {
  ManualClock clock;
  std::thread a([&] {
    for (int i = 0; i < 1000; ++i) clock.Advance(absl::Milliseconds(1));
  });
  std::thread b([&] {
    for (int i = 0; i < 1000; ++i) clock.Advance(absl::Milliseconds(1));
  });
  a.join();
  b.join();
  EXPECT_EQ(clock.Now(), kManualClockEpoch + absl::Seconds(2));
}

TEST(ManualClockDeathTest, RefusesToGoBack) {
  ManualClock clock;
  EXPECT_DEATH(clock.AdvanceTo(kManualClockEpoch - absl::Seconds(1)), "cannot go back");
}

TEST(RealClock, FollowsWallTime) {
  Clock& clock = Clock::Real();
  absl::Time before = clock.Now();
  clock.SleepFor(absl::Milliseconds(2));
  EXPECT_GE(clock.Now() - before, absl::Milliseconds(2));
  EXPECT_EQ(&clock, &Clock::Real());
}

}  // namespace
}  // namespace autoscale
