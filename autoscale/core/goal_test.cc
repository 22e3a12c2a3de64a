#include "autoscale/core/goal.h"

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "autoscale/base/units.h"
#include "gtest/gtest.h"

namespace autoscale::core {
namespace {

const Resources kCu{250, kGiB};  // the reference's compute unit: 0.25 vCPU, 1 GiB

// The configuration of the reference's goal table test (goalcu_test.go).
ScalingConfig ReferenceTestConfig() {
  ScalingConfig c;
  c.load_average_fraction_target = 1.0;
  c.memory_usage_fraction_target = 0.5;
  c.memory_total_fraction_target = 0.9;
  c.enable_lfc_metrics = true;
  c.lfc_to_memory_ratio = 0.75;
  c.lfc_window_size_minutes = 5;
  c.lfc_min_wait_before_downscale_minutes = 5;
  return c;
}

struct GoalCase {
  const char* name;
  double stable_zone;
  double mixed_zone;
  std::optional<SystemMetrics> system;
  std::optional<double> want_cpu_cu;
  uint32_t want_goal_cu;
};

// The reference's named cases: the CPU part and the resulting goal.
TEST(ComputeGoal, ReferenceTableCases) {
  const GoalCase cases[] = {
      {"basic", 0, 0, std::nullopt, std::nullopt, 0},
      {"cpu-load1-1cu", 0, 0, SystemMetrics{.load_avg_1m = 0.2}, 0.8, 1},
      {"cpu-load1-4cu", 0, 0, SystemMetrics{.load_avg_1m = 1}, 4.0, 4},
      {"cpu-zone-load1", 0.5, 0, SystemMetrics{.load_avg_1m = 0.7, .load_avg_5m = 0}, 2.8, 3},
      {"cpu-zone-load5", 0.5, 0, SystemMetrics{.load_avg_1m = 1, .load_avg_5m = 0.7}, 2.8, 3},
      {"cpu-zone-mixed", 0.5, 0.5, SystemMetrics{.load_avg_1m = 1.75, .load_avg_5m = 1},
       5.499997000005999, 5},
  };
  for (const GoalCase& c : cases) {
    SCOPED_TRACE(c.name);
    ScalingConfig config = ReferenceTestConfig();
    config.cpu_stable_zone_ratio = c.stable_zone;
    config.cpu_mixed_zone_ratio = c.mixed_zone;
    Goal g = ComputeGoal(config, kCu, c.system ? &*c.system : nullptr, nullptr);
    EXPECT_FALSE(g.has_all_metrics) << "LFC is enabled but has no metrics";
    ASSERT_EQ(g.cpu_cu.has_value(), c.want_cpu_cu.has_value());
    if (c.want_cpu_cu) {
      EXPECT_NEAR(*g.cpu_cu, *c.want_cpu_cu, 1e-6);
    }
    EXPECT_EQ(g.goal_cu, c.want_goal_cu);
    if (c.system) {
      EXPECT_EQ(g.decided_by, Signal::kCpu);
    }
  }
}

// neon-autoscaling.md 2.7: shipped defaults, load1 = 1.0, usage 2 GiB, LFC off.
TEST(ComputeGoal, ReferenceWorkedExample) {
  SystemMetrics m{.load_avg_1m = 1.0, .memory_usage_bytes = 2.0 * kGiB};
  Goal g = ComputeGoal(ScalingConfig{}, kCu, &m, nullptr);
  EXPECT_NEAR(*g.cpu_cu, 4.444, 1e-3);     // 1.0 / 0.9 / 0.25, rounds to 4
  EXPECT_NEAR(*g.memory_cu, 2.667, 1e-3);  // 2 / 0.75, rounds up to 3
  EXPECT_FALSE(g.memory_total_cu.has_value());
  EXPECT_FALSE(g.lfc_cu.has_value());
  EXPECT_EQ(g.goal_cu, 4u);
  EXPECT_EQ(g.decided_by, Signal::kCpu);
  EXPECT_TRUE(g.has_all_metrics);
}

TEST(ComputeGoal, CpuRoundsHalfAwayFromZeroLikeStdRound) {
  ScalingConfig c;
  c.load_average_fraction_target = 1;
  const Resources one_core{1000, kGiB};  // cpu_cu is the load itself
  for (double load : {0.0, 0.49999999999999994, 0.5, 1.4999999999999998, 1.5, 2.5,
                      3.5000000000000004, 1073741823.5, std::nextafter(1073741823.5, 0.0)}) {
    SystemMetrics m{.load_avg_1m = load, .load_avg_5m = load};
    const Goal g = ComputeGoal(c, one_core, &m, nullptr);
    ASSERT_TRUE(g.cpu_cu.has_value());
    EXPECT_EQ(g.goal_cu, static_cast<uint32_t>(std::round(*g.cpu_cu))) << load;
  }
  // The memory goal rounds the bytes the same way (ties, just below, beyond 2^52).
  for (double usage : {0.0, 0.5, 1.5, 2.4999999999999996, 3221225471.5, 0x1p52 + 2, 1e30}) {
    SystemMetrics m{.memory_usage_bytes = usage};
    c.memory_usage_fraction_target = 1;
    const Goal g = ComputeGoal(c, one_core, &m, nullptr);
    EXPECT_EQ(*g.memory_cu, std::clamp(std::round(usage) / kGiB, 0.0, double{1 << 30})) << usage;
  }
}

TEST(ComputeGoal, CpuRoundsButMemoryRoundsUp) {
  // CPU 4.4 rounds down to 4; memory 4.1 rounds up to 5 and decides.
  SystemMetrics m{.load_avg_1m = 0.99, .memory_usage_bytes = 0.75 * 4.1 * kGiB};
  Goal g = ComputeGoal(ScalingConfig{}, kCu, &m, nullptr);
  EXPECT_EQ(g.goal_cu, 5u);
  EXPECT_EQ(g.decided_by, Signal::kMemory);
  // CPU 4.5 rounds up (half away from zero) to 5, memory 4.0 stays 4.
  SystemMetrics m2{.load_avg_1m = 0.9 * 1.125, .memory_usage_bytes = 0.75 * 4 * kGiB};
  Goal g2 = ComputeGoal(ScalingConfig{}, kCu, &m2, nullptr);
  EXPECT_EQ(g2.goal_cu, 5u);
  EXPECT_EQ(g2.decided_by, Signal::kCpu);
}

TEST(ComputeGoal, StableZoneUsesFiveMinuteAverage) {
  ScalingConfig c;
  c.cpu_stable_zone_ratio = 0.5;  // |la1 - la5| <= 0.5 * la5: use la5
  SystemMetrics m{.load_avg_1m = 1.2, .load_avg_5m = 0.9};
  Goal g = ComputeGoal(c, kCu, &m, nullptr);
  EXPECT_DOUBLE_EQ(*g.load_average, 0.9);
  EXPECT_EQ(g.goal_cu, 4u);  // 0.9 / 0.9 / 0.25
}

TEST(WorkingSet, ReferenceEstimatorCases) {
  // wss_test.go "basic-plateau": the knee is at the plateau before the growth resumes.
  const std::vector<double> plateau = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                       1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3,
                                       1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0};
  EXPECT_EQ(EstimateTrueWorkingSetSize(plateau, 2.0, 9, 5), 1.0);
  // "plateau-before-init": a plateau before the offset does not count.
  const std::vector<double> early = {0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.4,
                                     0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1};
  EXPECT_EQ(EstimateTrueWorkingSetSize(early, 2.0, 9, 5), 1.1);
}

TEST(WorkingSet, ReferenceProjectionCases) {
  const std::vector<double> basic = {0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0};
  EXPECT_DOUBLE_EQ(ProjectNextHighest(basic, 0.5), 1.05);  // 1.0 + 0.5 * (1.0 - 0.9)
  const std::vector<double> second = {0.0, 0.3, 0.5, 0.6};
  EXPECT_DOUBLE_EQ(ProjectNextHighest(second, 2.0), 0.9);  // from 0.0 -> 0.3
  const std::vector<double> one = {7};
  EXPECT_EQ(ProjectNextHighest(one, 0.5), 7) << "too short to project: the value itself";
  EXPECT_EQ(ProjectNextHighest({}, 0.5), 0);
}

std::vector<double> Windows(double per_minute, int plateau_from, double after_per_minute) {
  // Grows by `per_minute` pages a minute until `plateau_from`, then by `after_per_minute`.
  std::vector<double> w;
  double v = 0;
  for (int i = 0; i < 60; ++i) {
    v += i < plateau_from ? per_minute : after_per_minute;
    w.push_back(v);
  }
  return w;
}

TEST(ComputeGoal, LfcGoalFromKneeAndProjection) {
  ScalingConfig c;
  c.enable_lfc_metrics = true;
  // 10,000 pages a minute for 20 minutes (the hot set), then a flat tail: a knee is not found
  // (the slope never triples), so the estimate is the 60-minute value: 200,000 pages.
  LfcMetrics lfc{Windows(10000, 20, 0)};
  SystemMetrics m{
      .load_avg_1m = 0, .memory_usage_bytes = 0.5 * kGiB, .memory_cached_bytes = 4.0 * kGiB};
  Goal g = ComputeGoal(c, kCu, &m, &lfc);
  ASSERT_TRUE(g.lfc_cu.has_value());
  EXPECT_DOUBLE_EQ(*g.lfc_estimate_pages, 200000);
  // The series up to the estimate rises by 10,000 a step: projected 200,000 + 5,000.
  EXPECT_DOUBLE_EQ(*g.lfc_projected_pages, 205000);
  const double wss_bytes = 205000 * 8192.0;
  EXPECT_DOUBLE_EQ(*g.lfc_cu, wss_bytes / 0.75 / kGiB);  // 2.08 -> 3 CU
  // Total: (usage + min(wss, cached)) / 0.9.
  EXPECT_DOUBLE_EQ(*g.memory_total_cu, (0.5 * kGiB + wss_bytes) / 0.9 / kGiB);  // 2.29 -> 3
  EXPECT_EQ(g.goal_cu, 3u);
  EXPECT_EQ(g.decided_by, Signal::kMemoryTotal) << "2.29 beats 2.08: total decides";
  EXPECT_TRUE(g.has_all_metrics);
}

TEST(ComputeGoal, LfcKneeCutsOffColdGrowth) {
  ScalingConfig c;
  c.enable_lfc_metrics = true;
  // 1,000 pages a minute for 10 minutes, then 50,000 a minute (a scan of cold data). With a
  // 5-minute window the knee is the first t whose next 4 minutes reach into the scan: t = 6
  // (7,000 pages), where the slope jumps from 4,000 to 53,000. The scan does not count.
  LfcMetrics lfc{Windows(1000, 10, 50000)};
  SystemMetrics m{};
  Goal g = ComputeGoal(c, kCu, &m, &lfc);
  EXPECT_DOUBLE_EQ(*g.lfc_estimate_pages, 7000);
  EXPECT_DOUBLE_EQ(*g.lfc_projected_pages, 7500);  // + half of the last 1,000-page step
  EXPECT_EQ(g.goal_cu, 1u);                        // 7,500 pages = 59 MiB / 0.75 -> 1 CU
  EXPECT_EQ(g.decided_by, Signal::kLfc);
}

TEST(ComputeGoal, LargestWindowEscapeHatch) {
  ScalingConfig c;
  c.enable_lfc_metrics = true;
  c.lfc_use_largest_window = true;
  LfcMetrics lfc{Windows(1000, 10, 50000)};
  SystemMetrics m{};
  Goal g = ComputeGoal(c, kCu, &m, &lfc);
  EXPECT_DOUBLE_EQ(*g.lfc_estimate_pages, lfc.working_set_pages.back());
}

TEST(ComputeGoal, LfcIgnoredWhenDisabledAndMissingWhenTooShort) {
  SystemMetrics m{.load_avg_1m = 0.2};
  LfcMetrics lfc{Windows(100000, 60, 0)};
  Goal off = ComputeGoal(ScalingConfig{}, kCu, &m, &lfc);
  EXPECT_FALSE(off.lfc_cu.has_value());
  EXPECT_TRUE(off.has_all_metrics);

  ScalingConfig on;
  on.enable_lfc_metrics = true;
  LfcMetrics short_series{{1, 2, 3, 4, 5, 6, 7, 8}};  // needs 5 - 1 + 5 = 9 windows
  Goal too_short = ComputeGoal(on, kCu, &m, &short_series);
  EXPECT_FALSE(too_short.lfc_cu.has_value());
  EXPECT_TRUE(too_short.has_all_metrics) << "present but short: no LFC goal, not missing";

  Goal missing = ComputeGoal(on, kCu, &m, nullptr);
  EXPECT_FALSE(missing.has_all_metrics);
  EXPECT_EQ(missing.goal_cu, 1u);
}

TEST(ComputeGoal, BadNumbersNeverPoisonTheGoal) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  SystemMetrics m{
      .load_avg_1m = nan, .load_avg_5m = inf, .memory_usage_bytes = -5, .memory_cached_bytes = nan};
  Goal g = ComputeGoal(ScalingConfig{}, kCu, &m, nullptr);
  EXPECT_EQ(g.goal_cu, 0u);
  SystemMetrics huge{.load_avg_1m = 1e300};
  Goal h = ComputeGoal(ScalingConfig{}, kCu, &huge, nullptr);
  EXPECT_EQ(h.goal_cu, 1u << 30) << "capped, not overflowed";
}

// The overload that writes into a Goal leaves nothing of what the Goal held before: each case
// written over a Goal with every field set gives what a new Goal gets.
TEST(ComputeGoal, WritingIntoAGoalLeavesNothingOfItsOldValue) {
  ScalingConfig lfc_on;
  lfc_on.enable_lfc_metrics = true;
  const LfcMetrics lfc{Windows(10000, 20, 0)};
  const SystemMetrics m{.load_avg_1m = 1.5,
                        .load_avg_5m = 0.5,
                        .memory_usage_bytes = 0.5 * kGiB,
                        .memory_cached_bytes = 4.0 * kGiB};
  auto fields = [](const Goal& g) {
    return std::make_tuple(g.cpu_cu, g.memory_cu, g.memory_total_cu, g.lfc_cu, g.load_average,
                           g.lfc_estimate_pages, g.lfc_projected_pages, g.goal_cu, g.decided_by,
                           g.has_all_metrics);
  };
  const Goal full = ComputeGoal(lfc_on, kCu, &m, &lfc);
  ASSERT_TRUE(full.lfc_cu && full.memory_total_cu && full.cpu_cu && full.has_all_metrics);
  struct Case {
    const ScalingConfig* config;
    const SystemMetrics* system;
    const LfcMetrics* lfc;
  };
  const ScalingConfig lfc_off;
  for (const Case& c :
       {Case{&lfc_on, &m, &lfc}, Case{&lfc_on, nullptr, nullptr}, Case{&lfc_on, &m, nullptr},
        Case{&lfc_off, &m, &lfc}, Case{&lfc_off, nullptr, nullptr}}) {
    Goal g = full;
    ComputeGoal(*c.config, kCu, c.system, c.lfc, g);
    EXPECT_EQ(fields(g), fields(ComputeGoal(*c.config, kCu, c.system, c.lfc)));
  }
}

}  // namespace
}  // namespace autoscale::core
