#include "autoscale/sim/workload.h"

#include <cmath>
#include <map>
#include <random>
#include <string>

#include "autoscale/base/units.h"
#include "autoscale/sim/internal/fast_math.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::sim {
namespace {

using ::testing::HasSubstr;

std::vector<Demand> Day(Workload& w, absl::Duration step = absl::Seconds(5)) {
  std::vector<Demand> out;
  for (absl::Duration t; t < absl::Hours(24); t += step) out.push_back(w.At(t));
  return out;
}

TEST(WorkloadTest, ParsesMixes) {
  absl::StatusOr<WorkloadMix> mix = ParseWorkloadMix("diurnal:3, bursty:0.5,idle");
  ASSERT_TRUE(mix.ok()) << mix.status();
  ASSERT_EQ(mix->weights.size(), 3u);
  EXPECT_EQ(mix->weights[0], std::make_pair(WorkloadKind::kDiurnal, 3.0));
  EXPECT_EQ(mix->weights[1], std::make_pair(WorkloadKind::kBursty, 0.5));
  EXPECT_EQ(mix->weights[2], std::make_pair(WorkloadKind::kIdle, 1.0));
  for (WorkloadKind k : kAllWorkloadKinds) {
    EXPECT_EQ(*ParseWorkloadKind(WorkloadKindName(k)), k);
  }
}

TEST(WorkloadTest, RejectsBadMixesNamingTheEntry) {
  EXPECT_THAT(ParseWorkloadMix("diurnal:3,weekly:1").status().message(),
              HasSubstr("entry 'weekly:1': unknown workload kind 'weekly'"));
  EXPECT_THAT(ParseWorkloadMix("diurnal:-1").status().message(), HasSubstr("> 0"));
  EXPECT_THAT(ParseWorkloadMix("diurnal:x").status().message(), HasSubstr("'x'"));
  EXPECT_THAT(ParseWorkloadMix("diurnal:nan").status().message(), HasSubstr("> 0"));
  EXPECT_THAT(ParseWorkloadMix("idle,idle").status().message(), HasSubstr("twice"));
  EXPECT_THAT(ParseWorkloadMix("").status().message(), HasSubstr("empty"));
  EXPECT_THAT(ParseWorkloadMix("diurnal,,idle").status().message(), HasSubstr("empty"));
}

TEST(WorkloadTest, MakesTheMixInProportionAndInterleaved) {
  WorkloadMix mix = *ParseWorkloadMix("diurnal:3,bursty:1,idle:1");
  std::vector<std::unique_ptr<Workload>> w = MakeWorkloads(mix, 100, 1);
  ASSERT_EQ(w.size(), 100u);
  std::map<std::string, int> count;
  for (const auto& x : w) ++count[x->kind()];
  EXPECT_EQ(count["diurnal"], 60);
  EXPECT_EQ(count["bursty"], 20);
  EXPECT_EQ(count["idle"], 20);
  // Neighbours differ: every five VMs hold every kind.
  std::map<std::string, int> first5;
  for (int i = 0; i < 5; ++i) ++first5[w[i]->kind()];
  EXPECT_EQ(first5.size(), 3u);
}

TEST(WorkloadTest, SameSeedSameDemandOtherSeedOtherDemand) {
  for (WorkloadKind k : kAllWorkloadKinds) {
    auto a = NewWorkload(k, 42), b = NewWorkload(k, 42), c = NewWorkload(k, 43);
    const auto da = Day(*a), db = Day(*b), dc = Day(*c);
    EXPECT_EQ(da, db) << WorkloadKindName(k);
    EXPECT_NE(da, dc) << WorkloadKindName(k);
  }
}

// Each kind has its shape: checked over a day on several seeds.
TEST(WorkloadTest, KindsHaveTheirShapes) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    for (WorkloadKind k : kAllWorkloadKinds) {
      auto w = NewWorkload(k, seed);
      EXPECT_EQ(w->kind(), WorkloadKindName(k));
      const auto day = Day(*w);
      double cpu_lo = 1e18, cpu_hi = 0, mem_lo = 1e30, mem_hi = 0, cpu_mean = 0;
      for (const Demand& d : day) {
        ASSERT_GE(d.milli_cpu, 0);
        ASSERT_GE(d.memory_bytes, 64 << 20);
        ASSERT_EQ(d.memory_bytes % (1 << 20), 0) << "whole MiB";
        cpu_lo = std::min(cpu_lo, d.milli_cpu / 1000.0);
        cpu_hi = std::max(cpu_hi, d.milli_cpu / 1000.0);
        mem_lo = std::min(mem_lo, static_cast<double>(d.memory_bytes) / kGiB);
        mem_hi = std::max(mem_hi, static_cast<double>(d.memory_bytes) / kGiB);
        cpu_mean += d.milli_cpu / 1000.0 / static_cast<double>(day.size());
      }
      const std::string what = absl::StrCat(WorkloadKindName(k), " seed ", seed);
      EXPECT_LT(cpu_hi, 4.5) << what << ": fits the default 16 CU (4 vCPU)";
      EXPECT_LT(mem_hi, 14) << what;
      switch (k) {
        case WorkloadKind::kDiurnal:
          EXPECT_GT(cpu_hi, 3 * cpu_lo) << what << ": day and night";
          break;
        case WorkloadKind::kBursty:
          EXPECT_GT(cpu_hi, cpu_mean * 2) << what << ": bursts above the mean";
          break;
        case WorkloadKind::kRamp:
          EXPECT_GT(mem_hi, 3 * mem_lo) << what << ": a rise from little to much";
          break;
        case WorkloadKind::kSpike:
          EXPECT_GT(mem_hi, mem_lo + 2.5) << what << ": memory spikes of several GiB";
          break;
        case WorkloadKind::kIdle:
          EXPECT_LT(cpu_mean, 0.5) << what << ": mostly idle";
          break;
      }
    }
  }
}

TEST(WorkloadTest, SpikesArriveWithinSeconds) {
  // The memory of a spike rises faster than the agent's 5-second metrics: the monitor's job.
  bool fast = false;
  for (uint64_t seed = 1; seed <= 8 && !fast; ++seed) {
    auto w = NewWorkload(WorkloadKind::kSpike, seed);
    const auto day = Day(*w, absl::Seconds(1));
    for (size_t i = 5; i < day.size(); ++i) {
      if (day[i].memory_bytes - day[i - 5].memory_bytes > 1.0 * kGiB) fast = true;
    }
  }
  EXPECT_TRUE(fast);
}

TEST(FastMathTest, AgreesWithTheLibrary) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2'000'000; ++i) {
    // Nanoseconds up to 2^51 and beyond (the library's own path), whole steps among them.
    int64_t ns = static_cast<int64_t>(rng() >> (i % 2 == 0 ? 13 : 1));
    if (i % 3 == 0) ns = ns / 1'000'000'000 * 1'000'000'000 + (i % 7) * 5'000'000;
    const absl::Duration d = absl::Nanoseconds(ns);
    ASSERT_EQ(ToSeconds(d), absl::ToDoubleSeconds(d)) << ns;
    ASSERT_EQ(ToNanoseconds(d), absl::ToDoubleNanoseconds(d)) << ns;
    ASSERT_EQ(ToNanoseconds(-d), absl::ToDoubleNanoseconds(-d)) << ns;
  }
  for (absl::Duration d : {absl::ZeroDuration(), absl::Nanoseconds(1) / 4, absl::Seconds(-5),
                           absl::InfiniteDuration(), absl::Hours(24 * 3650)}) {
    EXPECT_EQ(ToSeconds(d), absl::ToDoubleSeconds(d)) << d;
    EXPECT_EQ(ToNanoseconds(d), absl::ToDoubleNanoseconds(d)) << d;
  }
  std::vector<double> xs = {
      0.0,    0.49999999999999994, 0.5,   1.5,  2.5,  4503599627370495.5,
      0x1p52, 0x1p53 + 2,          1e300, -0.5, -2.5, std::nextafter(1.0, 0.0)};
  for (int i = 0; i < 1'000'000; ++i) {
    xs.push_back(std::ldexp(static_cast<double>(rng() >> 11), -static_cast<int>(rng() % 60)));
  }
  for (double x : xs) {
    EXPECT_EQ(RoundToInt(x), std::llround(x)) << x;
    EXPECT_EQ(Floor(x), std::floor(x)) << x;
  }
}

}  // namespace
}  // namespace autoscale::sim
