#include "autoscale/sim/internal/monitor_model.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/sim/internal/random.h"
#include "autoscale/sim/workload.h"
#include "gtest/gtest.h"
#include "lfc/resizer.h"
#include "monitor/monitor.h"

namespace autoscale::sim {
namespace {

// The real monitor::Monitor on a manual clock, reading a guest whose memory is all anon.
class RealMonitor {
 public:
  explicit RealMonitor(const monitor::MonitorOptions& options)
      : monitor_(options, clock_, resizer_,
                 monitor::Monitor::Hooks{
                     .read_stat = [this]() -> absl::StatusOr<monitor::cgroup::MemoryStat> {
                       return monitor::cgroup::MemoryStat{
                           .anon_bytes = usage_, .file_bytes = 0, .usage_bytes = usage_};
                     },
                     .set_threshold = [](int64_t) { return absl::OkStatus(); },
                     .request_upscale = [this](int64_t, int64_t) { ++requests_; }}) {}

  ManualClock clock_;
  lfc::NoopResizer resizer_;
  int64_t usage_ = 0;
  int requests_ = 0;
  monitor::Monitor monitor_;
};

std::string Name(MonitorModel::Decision d) {
  switch (d) {
    case MonitorModel::Decision::kApproved:
      return "approved";
    case MonitorModel::Decision::kDenied:
      return "denied";
    case MonitorModel::Decision::kError:
      return "error";
  }
  return "?";
}

std::string Name(const absl::StatusOr<monitor::Monitor::DownscaleDecision>& d) {
  if (!d.ok()) return "error";
  return d->ok ? "approved" : "denied";
}

// Random samples, watcher events, downscale checks and upscale notifications, with time steps
// from 0.1 s to 8 s, for several option sets: the model decides as the real monitor does.
TEST(MonitorModelTest, DecidesAsTheRealMonitor) {
  monitor::MonitorOptions tight;
  tight.samples_averaged = 3;
  tight.min_samples = 3;
  tight.upscale_request_min_interval = absl::Seconds(2);
  tight.max_sample_age = absl::Seconds(3);
  tight.threshold_fraction = 0.7;
  monitor::MonitorOptions wide;
  wide.samples_averaged = MonitorModel::kMaxSamples;
  wide.downscale_headroom_bytes = 0;
  const std::pair<const char*, monitor::MonitorOptions> option_sets[] = {
      {"default", monitor::MonitorOptions{}}, {"tight", tight}, {"wide", wide}};
  for (const auto& [label, set] : option_sets) {
    const monitor::MonitorOptions& options = set;
    const std::string option_label = label;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      Rng rng(seed);
      RealMonitor real(options);
      MonitorModel model(options);
      int64_t memory = (1 + static_cast<int64_t>(rng.Uniform(0, 8))) * 1024 * kMiB;
      ASSERT_TRUE(real.monitor_.Start(memory).ok());
      model.Start(memory);
      int64_t usage = memory / 2;
      for (int op = 0; op < 2000; ++op) {
        const std::string ctx =
            absl::StrCat("options ", option_label, ", seed ", seed, ", op ", op);
        real.clock_.Advance(absl::Milliseconds(100 * (1 + static_cast<int>(rng.Uniform(0, 80)))));
        const absl::Time now = real.clock_.Now();
        const double r = rng.Uniform();
        // Sends one sample (or watcher event) of `u` to both; checks they ask alike.
        auto sample = [&](int64_t u, bool event, absl::Time at) {
          real.usage_ = u;
          const int before = real.requests_;
          bool asked;
          if (event) {
            real.monitor_.OnMemoryEvent(
                {.kind = monitor::cgroup::MemoryEvent::Kind::kUsageAbove, .usage_bytes = u});
            asked = model.OnUsageAbove(at, u);
          } else {
            real.monitor_.Sample();
            asked = model.Sample(at, u);
          }
          return real.requests_ - before == (asked ? 1 : 0);
        };
        if (r < 0.5) {
          // Usage wanders around the threshold.
          usage = std::clamp<int64_t>(usage + static_cast<int64_t>(rng.Uniform(-300, 300)) * kMiB,
                                      0, 2 * memory);
          ASSERT_TRUE(sample(usage, r < 0.15, now)) << ctx;
        } else if (r < 0.6) {
          // Exactly at the threshold, or one byte either side.
          usage = model.threshold_bytes() + static_cast<int64_t>(rng.Uniform(0, 3)) - 1;
          ASSERT_TRUE(sample(usage, r < 0.55, now)) << ctx;
        } else if (r < 0.85) {
          const int64_t target = std::max<int64_t>(
              256 * kMiB, memory - static_cast<int64_t>(rng.Uniform(0, 4)) * 512 * kMiB);
          if (r < 0.7) {
            // An average exactly at the limit of what `target` allows, or one byte either side.
            usage = monitor::ThresholdBytes(target, options) - options.downscale_headroom_bytes +
                    static_cast<int64_t>(rng.Uniform(0, 3)) - 1;
            for (int i = 0; i < options.samples_averaged; ++i) {
              real.clock_.Advance(absl::Milliseconds(100));
              ASSERT_TRUE(sample(usage, false, real.clock_.Now())) << ctx;
            }
          }
          const absl::Time at = real.clock_.Now();
          const std::string want = Name(real.monitor_.TryDownscale(target));
          ASSERT_EQ(Name(model.TryDownscale(at, target)), want) << ctx << ", target " << target;
          if (want == "approved") memory = target;
        } else {
          memory += static_cast<int64_t>(rng.Uniform(1, 4)) * 512 * kMiB;
          ASSERT_TRUE(real.monitor_.NotifyUpscale(memory).ok());
          model.NotifyUpscale(memory);
        }
        ASSERT_EQ(model.memory_bytes(), real.monitor_.memory_bytes()) << ctx;
        ASSERT_EQ(model.threshold_bytes(), real.monitor_.threshold_bytes()) << ctx;
        ASSERT_EQ(model.threshold_bytes(), real.monitor_.watch_level_bytes()) << ctx;
        ASSERT_EQ(model.average_usage_bytes(), real.monitor_.average_usage_bytes()) << ctx;
        ASSERT_EQ(model.upscale_requests(), real.monitor_.upscale_requests()) << ctx;
      }
    }
  }
}

TEST(MonitorModelTest, FollowsTheReferenceRules) {
  monitor::MonitorOptions options;  // threshold 0.85 of (memory - 100 MiB), headroom 100 MiB
  MonitorModel m(options);
  m.Start(1024 * kMiB);
  EXPECT_EQ(m.threshold_bytes(), static_cast<int64_t>(0.85 * 924 * kMiB));
  const absl::Time t0 = kManualClockEpoch;
  EXPECT_EQ(m.TryDownscale(t0, 512 * kMiB), MonitorModel::Decision::kError) << "no sample yet";
  EXPECT_FALSE(m.Sample(t0, 500 * kMiB));
  EXPECT_EQ(m.TryDownscale(t0, 512 * kMiB), MonitorModel::Decision::kDenied) << "one sample";
  EXPECT_FALSE(m.Sample(t0 + absl::Seconds(1), 500 * kMiB));
  // At 1 GiB the threshold is 785 MiB: 500 + 100 fits; at 768 MiB (568 MiB) it does not.
  EXPECT_EQ(m.TryDownscale(t0 + absl::Seconds(1), 768 * kMiB), MonitorModel::Decision::kDenied);
  EXPECT_TRUE(m.OnUsageAbove(t0 + absl::Seconds(2), 800 * kMiB)) << "past the threshold: ask";
  EXPECT_FALSE(m.OnUsageAbove(t0 + absl::Milliseconds(2500), 900 * kMiB)) << "once a second";
  EXPECT_TRUE(m.OnUsageAbove(t0 + absl::Seconds(3), 900 * kMiB));
  EXPECT_EQ(m.TryDownscale(t0 + absl::Seconds(9), 768 * kMiB), MonitorModel::Decision::kError)
      << "the last sample is older than 5 s";
  m.NotifyUpscale(2048 * kMiB);
  EXPECT_EQ(m.memory_bytes(), 2048 * kMiB);
}

}  // namespace
}  // namespace autoscale::sim
