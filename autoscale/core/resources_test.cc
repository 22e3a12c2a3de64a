#include "autoscale/core/resources.h"

#include <string>

#include "autoscale/base/units.h"
#include "gtest/gtest.h"

namespace autoscale::core {
namespace {

TEST(ParseResourcesTest, Forms) {
  EXPECT_EQ(*ParseResources("250m/1GiB", "x"), (Resources{250, kGiB}));
  EXPECT_EQ(*ParseResources("8000m/512MiB", "x"), (Resources{8000, 512 << 20}));
  EXPECT_EQ(*ParseResources("0m/1024", "x"), (Resources{0, 1024}));
  EXPECT_EQ(*ParseResources("1m/2TiB", "x"), (Resources{1, 2 * (kGiB << 10)}));
  EXPECT_EQ(*ParseResources("3m/7B", "x"), (Resources{3, 7}));
  for (const char* bad : {"", "250/1GiB", "250m", "250m/", "-1m/1GiB", "250m/1XiB", "250m/1GiB/2",
                          "250m/-1GiB", "250m/99999999TiB", "99999999999999999999m/1GiB"}) {
    absl::StatusOr<Resources> r = ParseResources(bad, "--total");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--total"), std::string::npos) << bad;
    EXPECT_NE(r.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << r.status();
  }
}

TEST(ParseResourcesTest, ReadsWhatToStringWrites) {
  for (const Resources r : {Resources{1250, 5 * kGiB}, Resources{0, 0}, Resources{1, 3},
                            Resources{64000, 3 * (kGiB << 10)}, Resources{250, 768 << 20}}) {
    absl::StatusOr<Resources> back = ParseResources(r.ToString(), "x");
    ASSERT_TRUE(back.ok()) << r.ToString() << ": " << back.status();
    EXPECT_EQ(*back, r) << r.ToString();
  }
}

}  // namespace
}  // namespace autoscale::core
