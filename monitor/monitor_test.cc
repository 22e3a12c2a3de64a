#include "monitor/monitor.h"

#include <algorithm>
#include <string>
#include <vector>

#include "autoscale/base/units.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::monitor {
namespace {

using ::testing::HasSubstr;

class MonitorTest : public ::testing::Test {
 protected:
  MonitorTest()
      : resizer_([this](uint64_t bytes) {
          calls_.push_back("lfc " + std::to_string(bytes / kMiB));
          return lfc_error_;
        }),
        monitor_(
            MonitorOptions{}, clock_, resizer_,
            Monitor::Hooks{
                .read_stat = [this]() -> absl::StatusOr<cgroup::MemoryStat> {
                  if (!stat_error_.ok()) return stat_error_;
                  return stat_;
                },
                .set_threshold =
                    [this](int64_t t) {
                      if (fail_threshold_) return absl::UnavailableError("event_control");
                      calls_.push_back("threshold " + std::to_string(t));
                      return absl::OkStatus();
                    },
                .request_upscale = [this](int64_t usage, int64_t) { upscales_.push_back(usage); },
            }) {}

  void SampleAt(int64_t anon, int64_t file = 0) {
    stat_ = {.anon_bytes = anon, .file_bytes = file};
    monitor_.Sample();
    clock_.Advance(absl::Milliseconds(100));
  }

  ManualClock clock_;
  std::vector<std::string> calls_;
  absl::Status lfc_error_;
  absl::Status stat_error_;
  bool fail_threshold_ = false;
  cgroup::MemoryStat stat_;
  std::vector<int64_t> upscales_;
  lfc::CallbackResizer resizer_;
  Monitor monitor_;
};

TEST_F(MonitorTest, ThresholdIsTheReferenceFormula) {
  // 0.85 of (memory - 100 MiB).
  EXPECT_EQ(ThresholdBytes(kGiB, MonitorOptions{}), static_cast<int64_t>(0.85 * (924 * kMiB)));
  EXPECT_EQ(ThresholdBytes(50 * kMiB, MonitorOptions{}), 0);
  // A guest that shows only 156 MiB of a 256 MiB VM.
  MonitorOptions guest;
  guest.kernel_overhead_bytes = 100 * kMiB;
  EXPECT_EQ(ThresholdBytes(256 * kMiB, guest), static_cast<int64_t>(0.85 * (56 * kMiB)));
}

TEST_F(MonitorTest, StartSizesTheLfcAndArmsTheThreshold) {
  ASSERT_TRUE(monitor_.Start(4 * kGiB).ok());
  EXPECT_EQ(monitor_.memory_bytes(), 4 * kGiB);
  EXPECT_EQ(monitor_.threshold_bytes(), ThresholdBytes(4 * kGiB, MonitorOptions{}));
  ASSERT_EQ(calls_.size(), 2u);
  EXPECT_EQ(calls_[0], "lfc " + std::to_string(lfc::CacheSizeBytes(4 * kGiB) / kMiB));
  EXPECT_EQ(calls_[1], "threshold " + std::to_string(monitor_.threshold_bytes()));
}

TEST_F(MonitorTest, UpscaleWhenTheAverageCrossesRateLimited) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  SampleAt(t / 2);
  SampleAt(t + 100 * kMiB);  // average (t/2 + t + 100) / 2 is still below t
  EXPECT_TRUE(upscales_.empty());
  SampleAt(t + 400 * kMiB);
  ASSERT_EQ(upscales_.size(), 1u);
  SampleAt(t + 400 * kMiB);
  EXPECT_EQ(upscales_.size(), 1u) << "at most one request per second";
  clock_.Advance(absl::Seconds(1));
  SampleAt(t + 400 * kMiB);
  EXPECT_EQ(upscales_.size(), 2u);
}

TEST_F(MonitorTest, WatcherEventActsOnTheFreshSample) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  SampleAt(10 * kMiB);
  stat_ = {.anon_bytes = t + kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + kMiB});
  ASSERT_EQ(upscales_.size(), 1u) << "no waiting for the average";
  EXPECT_EQ(upscales_[0], t + kMiB);
}

TEST_F(MonitorTest, PageCacheAboveTheThresholdRaisesTheWatchLevel) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  EXPECT_EQ(monitor_.watch_level_bytes(), t);
  // The group's charge passed the threshold, but most of it is page cache.
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = t, .usage_bytes = t + 110 * kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + 110 * kMiB});
  EXPECT_TRUE(upscales_.empty()) << "page cache alone is no reason to grow";
  EXPECT_EQ(monitor_.watch_level_bytes(), t + t)
      << "re-armed above the page cache, where anon will reach the threshold";
  EXPECT_EQ(calls_.back(), "threshold " + std::to_string(t + t));
  // Anon grows to the threshold under the same cache: the next event asks for memory.
  stat_ = {.anon_bytes = t + kMiB, .file_bytes = t, .usage_bytes = 2 * t + 11 * kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, 2 * t + 11 * kMiB});
  EXPECT_EQ(upscales_.size(), 1u);
}

TEST_F(MonitorTest, EventBeforeTheFaultIsMappedCountsTheCharge) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = t - 2 * kMiB, .file_bytes = 0, .usage_bytes = t - kMiB};
  monitor_.Sample();  // 1 MiB of overhead
  // A 2 MiB huge page is charged but not mapped yet: anon does not show it.
  stat_ = {.anon_bytes = t - 2 * kMiB, .file_bytes = 0, .usage_bytes = t + kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + kMiB});
  ASSERT_EQ(upscales_.size(), 1u) << "the charge minus the known overhead reached the threshold";
  EXPECT_EQ(upscales_[0], t);
}

TEST_F(MonitorTest, AnEventBelowTheThresholdReArmsExactly) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 103 * kMiB};
  monitor_.Sample();  // armed at t + 3 MiB
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 104 * kMiB};
  monitor_.Sample();  // 4 MiB of overhead now: within the slack, not re-armed
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 3 * kMiB);
  // The charge reaches the old level while anon is still below the threshold: re-arm where anon
  // will reach it, or the watcher never fires again.
  stat_ = {.anon_bytes = t - kMiB, .file_bytes = 0, .usage_bytes = t + 3 * kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + 3 * kMiB});
  EXPECT_TRUE(upscales_.empty());
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 4 * kMiB);
}

TEST_F(MonitorTest, PageCacheGrowthAtAnEventIsNotMistakenForAnon) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 101 * kMiB};
  monitor_.Sample();
  // The page cache grew past the threshold since the last sample.
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = t, .usage_bytes = t + 101 * kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + 101 * kMiB});
  EXPECT_TRUE(upscales_.empty());
}

TEST_F(MonitorTest, WatchLevelMovesOnlyBeyondTheSlack) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 50 * kMiB, .file_bytes = 0, .usage_bytes = 60 * kMiB};
  monitor_.Sample();
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 10 * kMiB);
  size_t arms = calls_.size();
  stat_.usage_bytes = 61 * kMiB;  // 1 MiB more overhead: within the 2 MiB slack
  monitor_.Sample();
  EXPECT_EQ(calls_.size(), arms) << "no re-arming for small moves";
  stat_.usage_bytes = 64 * kMiB;
  monitor_.Sample();
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 14 * kMiB);
}

TEST_F(MonitorTest, ShrunkOverheadReArmsAtOnce) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 50 * kMiB, .file_bytes = 0, .usage_bytes = 60 * kMiB};
  monitor_.Sample();
  ASSERT_EQ(monitor_.watch_level_bytes(), t + 10 * kMiB);
  // The kernel's per-CPU charge batches: no re-arming for 128 KiB less.
  const size_t arms = calls_.size();
  stat_.usage_bytes = 60 * kMiB - 128 * 1024;
  monitor_.Sample();
  EXPECT_EQ(calls_.size(), arms);
  // 1 MiB less overhead: a level left at t + 10 MiB would miss anon passing the threshold by
  // less than 1 MiB.
  stat_.usage_bytes = 59 * kMiB;
  monitor_.Sample();
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 9 * kMiB);
  EXPECT_EQ(calls_.back(), "threshold " + std::to_string(t + 9 * kMiB));
}

TEST_F(MonitorTest, AForcedReArmingThatFailedIsForcedAgain) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 103 * kMiB};
  monitor_.Sample();  // armed at t + 3 MiB
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 104 * kMiB};
  monitor_.Sample();  // 4 MiB of overhead: within the slack, not re-armed
  // The charge reaches t + 3 MiB with anon below the threshold: re-arming at t + 4 MiB, exactly,
  // fails.
  fail_threshold_ = true;
  stat_ = {.anon_bytes = t - kMiB, .file_bytes = 0, .usage_bytes = t + 3 * kMiB};
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + 3 * kMiB});
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 3 * kMiB);
  // The next sample re-arms though t + 4 MiB is within the slack of the crossed level.
  fail_threshold_ = false;
  monitor_.Sample();
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 4 * kMiB);
  EXPECT_EQ(calls_.back(), "threshold " + std::to_string(t + 4 * kMiB));
}

TEST_F(MonitorTest, AnEventThatCannotBeReadReArmsAtTheNextSample) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 101 * kMiB};
  monitor_.Sample();  // armed at t + 1 MiB
  const size_t arms = calls_.size();
  stat_error_ = absl::UnavailableError("memory.stat");
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, t + kMiB});
  stat_error_ = absl::OkStatus();
  stat_ = {.anon_bytes = 100 * kMiB, .file_bytes = 0, .usage_bytes = 102 * kMiB};
  monitor_.Sample();
  EXPECT_EQ(calls_.size(), arms + 1) << "re-armed though within the slack";
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 2 * kMiB);
}

TEST_F(MonitorTest, AFailedArmingIsRetriedAtTheNextSample) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  const int64_t t = monitor_.threshold_bytes();
  stat_ = {.anon_bytes = 50 * kMiB, .file_bytes = 0, .usage_bytes = 60 * kMiB};
  fail_threshold_ = true;
  monitor_.Sample();
  EXPECT_EQ(monitor_.watch_level_bytes(), t) << "still armed where it was";
  fail_threshold_ = false;
  monitor_.Sample();
  EXPECT_EQ(monitor_.watch_level_bytes(), t + 10 * kMiB);
  EXPECT_EQ(calls_.back(), "threshold " + std::to_string(t + 10 * kMiB));
}

TEST_F(MonitorTest, PressureAsksForMemory) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kPressure, -1});
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kPressure, -1});
  EXPECT_EQ(upscales_.size(), 1u);
  EXPECT_EQ(monitor_.upscale_requests(), 1);
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageBelow, 0});
  EXPECT_EQ(upscales_.size(), 1u);
}

TEST_F(MonitorTest, DownscaleNeedsRecentSamples) {
  ASSERT_TRUE(monitor_.Start(2 * kGiB).ok());
  auto none = monitor_.TryDownscale(kGiB);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << "no sample is an error";
  SampleAt(100 * kMiB);
  auto one = monitor_.TryDownscale(kGiB);
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE(one->ok);
  EXPECT_THAT(one->status, HasSubstr("not enough memory samples"));
  SampleAt(100 * kMiB);
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(monitor_.TryDownscale(kGiB).status().code(), absl::StatusCode::kUnavailable)
      << "a stale sample is an error";
}

TEST_F(MonitorTest, DownscaleApprovedShrinksTheLfcFirst) {
  ASSERT_TRUE(monitor_.Start(2 * kGiB).ok());
  SampleAt(200 * kMiB);
  SampleAt(200 * kMiB);
  calls_.clear();
  auto d = monitor_.TryDownscale(kGiB);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->ok) << d->status;
  ASSERT_EQ(calls_.size(), 2u);
  EXPECT_EQ(calls_[0], "lfc " + std::to_string(lfc::CacheSizeBytes(kGiB) / kMiB))
      << "the LFC shrinks before the threshold moves and before the approval";
  EXPECT_EQ(calls_[1], "threshold " + std::to_string(ThresholdBytes(kGiB, MonitorOptions{})));
  EXPECT_EQ(monitor_.memory_bytes(), kGiB);
}

TEST_F(MonitorTest, DownscaleDeniedWithoutHeadroom) {
  ASSERT_TRUE(monitor_.Start(2 * kGiB).ok());
  // At 1 GiB the threshold is 785 MiB; 700 MiB + 100 MiB of headroom does not fit.
  SampleAt(700 * kMiB);
  SampleAt(700 * kMiB);
  calls_.clear();
  auto d = monitor_.TryDownscale(kGiB);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->ok);
  EXPECT_THAT(d->status, HasSubstr("would exceed the threshold"));
  EXPECT_TRUE(calls_.empty()) << "nothing changes on a denial";
  EXPECT_EQ(monitor_.memory_bytes(), 2 * kGiB);
}

TEST_F(MonitorTest, LfcFailureBlocksTheDownscale) {
  ASSERT_TRUE(monitor_.Start(2 * kGiB).ok());
  SampleAt(100 * kMiB);
  SampleAt(100 * kMiB);
  lfc_error_ = absl::UnavailableError("postgres is down");
  auto d = monitor_.TryDownscale(kGiB);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("shrinking the LFC first"));
  EXPECT_EQ(monitor_.memory_bytes(), 2 * kGiB) << "not approved: the threshold stays";
}

TEST_F(MonitorTest, UpscaleNotificationRaisesThresholdThenGrowsLfc) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  calls_.clear();
  lfc_error_ = absl::UnavailableError("postgres is down");
  absl::Status s = monitor_.NotifyUpscale(3 * kGiB);
  EXPECT_THAT(std::string(s.message()), HasSubstr("growing the LFC"));
  EXPECT_EQ(monitor_.threshold_bytes(), ThresholdBytes(3 * kGiB, MonitorOptions{}))
      << "the memory is there: the threshold rises even when the LFC could not grow";
  ASSERT_EQ(calls_.size(), 2u);
  EXPECT_THAT(calls_[0], HasSubstr("threshold"));
}

TEST_F(MonitorTest, LfcFailureAtStartIsNotFatal) {
  lfc_error_ = absl::UnavailableError("postgres is down");
  EXPECT_TRUE(monitor_.Start(kGiB).ok());
  EXPECT_EQ(monitor_.threshold_bytes(), ThresholdBytes(kGiB, MonitorOptions{}));
}

// Postgres is usually not up when the monitor starts: the sizing is retried, with back-off,
// until it answers, and again whenever an agent connects.
TEST_F(MonitorTest, LfcSizingIsRetriedWithBackOffUntilPostgresAnswers) {
  lfc_error_ = absl::UnavailableError("postgres is not up");
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  EXPECT_TRUE(monitor_.lfc_pending());
  auto lfc_calls = [this] {
    return std::count_if(calls_.begin(), calls_.end(),
                         [](const std::string& c) { return c.rfind("lfc ", 0) == 0; });
  };
  ASSERT_EQ(lfc_calls(), 1);
  EXPECT_TRUE(monitor_.RetryLfc().ok()) << "not due: nothing tried";
  EXPECT_EQ(lfc_calls(), 1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(monitor_.RetryLfc().ok());
  EXPECT_EQ(lfc_calls(), 2);
  clock_.Advance(absl::Seconds(1));  // the back-off doubled to 2 s
  EXPECT_TRUE(monitor_.RetryLfc().ok());
  EXPECT_EQ(lfc_calls(), 2);
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(monitor_.RetryLfc().ok());
  EXPECT_EQ(lfc_calls(), 3);
  lfc_error_ = absl::OkStatus();  // Postgres is up
  clock_.Advance(absl::Seconds(4));
  EXPECT_TRUE(monitor_.RetryLfc().ok());
  EXPECT_EQ(lfc_calls(), 4);
  EXPECT_EQ(calls_.back(), "lfc " + std::to_string(lfc::CacheSizeBytes(kGiB) / kMiB));
  EXPECT_FALSE(monitor_.lfc_pending());
  clock_.Advance(absl::Minutes(5));
  EXPECT_TRUE(monitor_.RetryLfc().ok());
  EXPECT_EQ(lfc_calls(), 4) << "sized: no more calls";
  // An agent connects: sized again at once.
  monitor_.ResizeLfcSoon();
  EXPECT_TRUE(monitor_.RetryLfc().ok());
  EXPECT_EQ(lfc_calls(), 5);
}

TEST_F(MonitorTest, UnreadableStatsAreSkipped) {
  ASSERT_TRUE(monitor_.Start(kGiB).ok());
  stat_error_ = absl::NotFoundError("memory.stat: gone");
  monitor_.Sample();
  EXPECT_FALSE(monitor_.average_usage_bytes().has_value());
  monitor_.OnMemoryEvent({cgroup::MemoryEvent::Kind::kUsageAbove, kGiB});
  EXPECT_TRUE(upscales_.empty());
}

TEST(MonitorOptions, FromProtoValidates) {
  api::v1::MonitorConfig c;
  c.set_threshold_fraction(1.5);
  EXPECT_THAT(std::string(OptionsFromProto(c).status().message()), HasSubstr("thresholdFraction"));
  c.set_threshold_fraction(0.9);
  c.set_downscale_headroom_bytes(-1);
  EXPECT_THAT(std::string(OptionsFromProto(c).status().message()),
              HasSubstr("downscaleHeadroomBytes"));
  c.set_downscale_headroom_bytes(0);
  c.mutable_sample_interval()->set_seconds(3);
  auto o = OptionsFromProto(c);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->threshold_fraction, 0.9);
  EXPECT_EQ(o->sample_interval, absl::Seconds(3));
  EXPECT_EQ(o->max_sample_age, absl::Seconds(9)) << "three intervals at least";
}

}  // namespace
}  // namespace autoscale::monitor
