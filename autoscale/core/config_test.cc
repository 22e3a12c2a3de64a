#include "autoscale/core/config.h"

#include <cstdint>
#include <limits>
#include <string>

#include "autoscale/core/config_proto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::core {
namespace {

using ::testing::HasSubstr;

TEST(ScalingConfig, DefaultsAreTheReferences) {
  auto c = ResolveScalingConfig(api::v1::ScalingConfig{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->load_average_fraction_target, 0.9);
  EXPECT_DOUBLE_EQ(c->memory_usage_fraction_target, 0.75);
  EXPECT_DOUBLE_EQ(c->memory_total_fraction_target, 0.9);
  EXPECT_FALSE(c->enable_lfc_metrics);
  EXPECT_FALSE(c->lfc_use_largest_window);
  EXPECT_DOUBLE_EQ(c->lfc_to_memory_ratio, 0.75);
  EXPECT_EQ(c->lfc_window_size_minutes, 5);
  EXPECT_EQ(c->lfc_min_wait_before_downscale_minutes, 5);
  EXPECT_EQ(c->cpu_stable_zone_ratio, 0);
  EXPECT_EQ(c->cpu_mixed_zone_ratio, 0);
  EXPECT_EQ(c->downscale_stabilization_window, absl::ZeroDuration());
  EXPECT_EQ(c->max_downscale_step_cu, 0u);
}

TEST(ScalingConfig, OverridesApplyFieldByField) {
  api::v1::ScalingConfig defaults;
  defaults.set_load_average_fraction_target(0.8);
  defaults.set_enable_lfc_metrics(true);
  api::v1::ScalingConfig vm;
  vm.set_load_average_fraction_target(0.5);
  vm.set_enable_lfc_metrics(false);  // an explicit false overrides a true default
  vm.mutable_downscale_stabilization_window()->set_seconds(300);
  auto c = ResolveScalingConfig(defaults, vm);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->load_average_fraction_target, 0.5);
  EXPECT_FALSE(c->enable_lfc_metrics);
  EXPECT_DOUBLE_EQ(c->memory_usage_fraction_target, 0.75) << "unset in both: reference default";
  EXPECT_EQ(c->downscale_stabilization_window, absl::Minutes(5));
}

struct BadCase {
  const char* field;
  void (*set)(api::v1::ScalingConfig&);
};

TEST(ScalingConfig, ValidationNamesTheField) {
  const BadCase cases[] = {
      {"loadAverageFractionTarget",
       [](api::v1::ScalingConfig& c) { c.set_load_average_fraction_target(2); }},
      {"loadAverageFractionTarget",
       [](api::v1::ScalingConfig& c) { c.set_load_average_fraction_target(0); }},
      {"memoryUsageFractionTarget",
       [](api::v1::ScalingConfig& c) { c.set_memory_usage_fraction_target(1); }},
      {"memoryTotalFractionTarget",
       [](api::v1::ScalingConfig& c) { c.set_memory_total_fraction_target(-0.1); }},
      {"lfcToMemoryRatio", [](api::v1::ScalingConfig& c) { c.set_lfc_to_memory_ratio(1.5); }},
      {"lfcWindowSizeMinutes", [](api::v1::ScalingConfig& c) { c.set_lfc_window_size_minutes(1); }},
      {"lfcMinWaitBeforeDownscaleMinutes",
       [](api::v1::ScalingConfig& c) { c.set_lfc_min_wait_before_downscale_minutes(4); }},
      {"lfcMinWaitBeforeDownscaleMinutes",
       [](api::v1::ScalingConfig& c) { c.set_lfc_min_wait_before_downscale_minutes(59); }},
      // minWait + window - 1 overflowed int and passed the "<= 60 windows" check.
      {"lfcMinWaitBeforeDownscaleMinutes",
       [](api::v1::ScalingConfig& c) {
         c.set_lfc_min_wait_before_downscale_minutes(2147483647);
         c.set_lfc_window_size_minutes(2);
       }},
      {"lfcWindowSizeMinutes",
       [](api::v1::ScalingConfig& c) {
         c.set_lfc_window_size_minutes(2147483647);
         c.set_lfc_min_wait_before_downscale_minutes(2147483647);
       }},
      {"cpuStableZoneRatio", [](api::v1::ScalingConfig& c) { c.set_cpu_stable_zone_ratio(1e300); }},
      {"maxDownscaleStepCu",
       [](api::v1::ScalingConfig& c) { c.set_max_downscale_step_cu(4000000000); }},
      {"cpuStableZoneRatio", [](api::v1::ScalingConfig& c) { c.set_cpu_stable_zone_ratio(-1); }},
      {"cpuMixedZoneRatio",
       [](api::v1::ScalingConfig& c) { c.set_cpu_mixed_zone_ratio(std::nan("")); }},
      {"downscaleStabilizationWindow",
       [](api::v1::ScalingConfig& c) {
         c.mutable_downscale_stabilization_window()->set_seconds(-1);
       }},
  };
  for (const BadCase& bad : cases) {
    api::v1::ScalingConfig p;
    bad.set(p);
    auto c = ResolveScalingConfig(api::v1::ScalingConfig{}, p);
    ASSERT_FALSE(c.ok()) << bad.field;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(bad.field));
  }
}

TEST(Timings, DefaultsAndOverrides) {
  api::v1::AgentTimings p;
  p.mutable_scheduler_retry_denied_upscale()->set_seconds(7);
  p.mutable_monitor_response_timeout()->set_nanos(500'000'000);
  auto t = ResolveTimings(p);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheduler_request_at_least_every, absl::Seconds(15));
  EXPECT_EQ(t->scheduler_retry_denied_upscale, absl::Seconds(7));
  EXPECT_EQ(t->monitor_response_timeout, absl::Milliseconds(500));
  EXPECT_EQ(t->monitor_requested_upscale_valid, absl::Seconds(10));
  EXPECT_EQ(t->vm_retry_failed_request, absl::Seconds(5));

  api::v1::AgentTimings bad;
  bad.mutable_vm_request_timeout()->set_seconds(-3);
  auto b = ResolveTimings(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("vmRequestTimeout"));
  api::v1::AgentTimings huge;
  huge.mutable_scheduler_request_timeout()->set_seconds(int64_t{1} << 40);
  b = ResolveTimings(huge);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("schedulerRequestTimeout"));
}

TEST(Conversions, ComputeUnitBoundsAndResources) {
  api::v1::ComputeUnit cu;
  cu.set_milli_cpu(250);
  EXPECT_THAT(std::string(ComputeUnitFromProto(cu).status().message()),
              HasSubstr("computeUnit.memoryBytes"));
  cu.set_memory_bytes(1 << 30);
  EXPECT_EQ(*ComputeUnitFromProto(cu), (Resources{250, 1 << 30}));
  cu.set_memory_bytes(int64_t{1} << 50);  // beyond the upper bound: cu * maxCu could overflow
  EXPECT_THAT(std::string(ComputeUnitFromProto(cu).status().message()),
              HasSubstr("computeUnit.memoryBytes"));
  cu.set_memory_bytes(1 << 30);
  cu.set_milli_cpu(int64_t{1} << 40);
  EXPECT_THAT(std::string(ComputeUnitFromProto(cu).status().message()),
              HasSubstr("computeUnit.milliCpu"));

  api::v1::Bounds b;
  b.set_min_cu(3);
  b.set_max_cu(2);
  EXPECT_THAT(std::string(BoundsFromProto(b).status().message()), HasSubstr("bounds.maxCu"));
  b.set_min_cu(0);
  EXPECT_THAT(std::string(BoundsFromProto(b).status().message()), HasSubstr("bounds.minCu"));
  b.set_min_cu(1);
  EXPECT_EQ(*BoundsFromProto(b), (Bounds{1, 2}));
  b.set_max_cu(kMaxCu + 1);
  EXPECT_THAT(std::string(BoundsFromProto(b).status().message()), HasSubstr("bounds.maxCu"));

  api::v1::Resources r;
  r.set_memory_bytes(-1);
  EXPECT_THAT(std::string(ResourcesFromProto(r, "using").status().message()),
              HasSubstr("using.memoryBytes"));
  EXPECT_EQ(ToProto(Resources{1, 2}).memory_bytes(), 2);
}

TEST(Resources, Arithmetic) {
  Resources a{1000, 4096}, b{250, 8192};
  EXPECT_EQ(Resources::Max(a, b), (Resources{1000, 8192}));
  EXPECT_EQ(Resources::Min(a, b), (Resources{250, 4096}));
  EXPECT_EQ(Resources::SaturatingSub(b, a), (Resources{0, 4096}));
  EXPECT_TRUE(a.AnyGreaterThan(b));
  EXPECT_TRUE(a.AnyLessThan(b));
  EXPECT_FALSE(a.FitsIn(b));
  EXPECT_TRUE((Resources{250, 4096}).FitsIn(a));
  EXPECT_EQ((b * 4).ToString(), "1000m/32KiB");
  // A product past int64 saturates instead of wrapping to a negative size.
  const Resources huge = Resources{kMaxComputeUnitMilliCpu, kMaxComputeUnitMemoryBytes} *
                         int64_t{std::numeric_limits<uint32_t>::max()};
  EXPECT_EQ(huge.milli_cpu, int64_t{kMaxComputeUnitMilliCpu} * 4294967295);
  EXPECT_EQ(huge.memory_bytes, std::numeric_limits<int64_t>::max());
  EXPECT_EQ((Resources{250, int64_t{5} << 30}).ToString(), "250m/5GiB");
  EXPECT_EQ(WholeComputeUnits(Resources{1000, int64_t{3} << 30}, Resources{250, 1 << 30}), 3);
}

}  // namespace
}  // namespace autoscale::core
