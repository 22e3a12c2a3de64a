#include "lfc/sizing.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "autoscale/base/units.h"
#include "gtest/gtest.h"

namespace autoscale::lfc {
namespace {

struct Case {
  const char* name;
  uint64_t memory;
  SizingConfig config;
  uint64_t want;
};

SizingConfig Neon() {  // vm-monitor's FileCacheConfig defaults
  SizingConfig config;
  config.min_remaining_bytes = 256 * kMiB;
  return config;
}

SizingConfig Capped(uint64_t max) {
  SizingConfig config;
  config.max_bytes = max;
  return config;
}

class CacheSizeTest : public testing::TestWithParam<Case> {};

TEST_P(CacheSizeTest, MatchesTheFormula) {
  const Case& c = GetParam();
  ASSERT_TRUE(ValidateSizingConfig(c.config).ok());
  EXPECT_EQ(CacheSizeBytes(c.memory, c.config), c.want)
      << c.name << ": got " << CacheSizeBytes(c.memory, c.config) / double(kMiB) << " MiB";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CacheSizeTest,
    testing::Values(
        // Large VMs: the 0.75 fraction is the smaller term. 4 GiB -> 3072 MiB.
        Case{"FractionBound4GiB", 4 * kGiB, {}, 3072 * kMiB},
        Case{"FractionBound16GiB", 16 * kGiB, {}, 12 * kGiB},
        // Small VMs: (memory - 640 MiB) / 1.1. 2 GiB: 1408 / 1.1 = 1280 MiB exactly.
        Case{"RemainderBound2GiB", 2 * kGiB, {}, 1280 * kMiB},
        // 1 GiB: 384 / 1.1 = 349.09 MiB, rounded down.
        Case{"RemainderBound1GiB", kGiB, {}, 349 * kMiB},
        // Crossover: 0.75 m = (m - 640) / 1.1 at m = 640 / 0.175 = 3657.14 MiB.
        Case{"JustBelowCrossover", 3657 * kMiB, {}, 2742 * kMiB},
        Case{"JustAboveCrossover", 3658 * kMiB, {}, 2743 * kMiB},
        Case{"AtMinRemaining", 640 * kMiB, {}, 0}, Case{"BelowMinRemaining", 512 * kMiB, {}, 0},
        Case{"NoMemory", 0, {}, 0},
        Case{"OneMiBAboveMinRemaining", 641 * kMiB, {}, 0},  // 1 / 1.1 MiB rounds down to 0
        // Neon's constants: 1 GiB -> 768 / 1.1 = 698.18 MiB.
        Case{"NeonConstants1GiB", kGiB, Neon(), 698 * kMiB},
        Case{"NeonConstants4GiB", 4 * kGiB, Neon(), 3072 * kMiB},
        // Capped like neon.max_file_cache_size; a cap that is not whole MiB rounds down.
        Case{"Capped", 16 * kGiB, Capped(2 * kGiB), 2 * kGiB},
        Case{"CapNotWholeMiB", 16 * kGiB, Capped(2 * kGiB + 12345), 2 * kGiB},
        Case{"CapAboveFormula", 4 * kGiB, Capped(8 * kGiB), 3072 * kMiB},
        Case{"ZeroCap", 4 * kGiB, Capped(0), 0},
        // No overflow at the top of the range.
        Case{"HugeMemoryCapped", std::numeric_limits<uint64_t>::max(), Capped(64 * kGiB),
             64 * kGiB}),
    [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(CacheSizeBytesTest, ResultIsWholeMiBAndNeverAboveMemoryAcrossRange) {
  for (uint64_t memory = 0; memory <= 64 * kGiB; memory += 7 * kMiB + 4097) {
    const uint64_t size = CacheSizeBytes(memory);
    EXPECT_EQ(size % kMiB, 0u) << memory;
    EXPECT_LE(size, memory * 3 / 4) << memory;
    if (memory > 640 * kMiB) {
      EXPECT_LE(size, memory - 640 * kMiB) << memory;
    }
  }
}

TEST(CacheSizeBytesTest, ConstantsAreConfigurable) {
  SizingConfig config;
  config.memory_fraction = 0.5;
  config.min_remaining_bytes = 0;
  config.spread_factor = 0;
  EXPECT_EQ(CacheSizeBytes(4 * kGiB, config), 2 * kGiB);
  config.memory_fraction = 1;
  EXPECT_EQ(CacheSizeBytes(4 * kGiB, config), 4 * kGiB);
  config.spread_factor = 1;  // (4 GiB - 0) / 2
  EXPECT_EQ(CacheSizeBytes(4 * kGiB, config), 2 * kGiB);
}

TEST(ValidateSizingConfigTest, RejectsOutOfRangeFractionsNamingTheField) {
  SizingConfig config;
  config.memory_fraction = 1.5;
  absl::Status status = ValidateSizingConfig(config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("memory_fraction"), std::string::npos) << status;

  config.memory_fraction = std::nan("");
  EXPECT_EQ(ValidateSizingConfig(config).code(), absl::StatusCode::kInvalidArgument);

  config = SizingConfig{};
  config.spread_factor = -0.1;
  status = ValidateSizingConfig(config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("spread_factor"), std::string::npos) << status;

  config.spread_factor = std::numeric_limits<double>::infinity();
  EXPECT_EQ(ValidateSizingConfig(config).code(), absl::StatusCode::kInvalidArgument);

  EXPECT_TRUE(ValidateSizingConfig(SizingConfig{}).ok());
}

}  // namespace
}  // namespace autoscale::lfc
