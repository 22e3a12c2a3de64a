#include "autoscale/base/prometheus.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, RendersCountersGaugesAndHistograms) {
  Metrics m;
  m.Describe("requests_total", Metrics::kCounter, "Requests.");
  m.Add("requests_total", {{"vm", "a"}, {"result", "ok"}});
  m.Add("requests_total", {{"vm", "a"}, {"result", "ok"}}, 2);
  m.Set("desired_cu", {{"vm", "a\"b"}}, 4);
  m.Describe("latency_seconds", Metrics::kHistogram, "Latency.");
  m.Observe("latency_seconds", {}, 0.003, {0.001, 0.01, 0.1});
  m.Observe("latency_seconds", {}, 0.05, {0.001, 0.01, 0.1});
  m.Observe("latency_seconds", {}, 7, {0.001, 0.01, 0.1});
  std::string page = m.Render();
  EXPECT_THAT(page, HasSubstr("# TYPE requests_total counter\n"));
  EXPECT_THAT(page, HasSubstr("requests_total{vm=\"a\",result=\"ok\"} 3\n"));
  EXPECT_THAT(page, HasSubstr("desired_cu{vm=\"a\\\"b\"} 4\n"));
  EXPECT_THAT(page, HasSubstr("latency_seconds_bucket{le=\"0.001\"} 0\n"));
  EXPECT_THAT(page, HasSubstr("latency_seconds_bucket{le=\"0.01\"} 1\n"));
  EXPECT_THAT(page, HasSubstr("latency_seconds_bucket{le=\"0.1\"} 2\n"));
  EXPECT_THAT(page, HasSubstr("latency_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(page, HasSubstr("latency_seconds_count 3\n"));
  m.Forget({"vm", "a"});
  EXPECT_THAT(m.Render(), Not(HasSubstr("requests_total{vm=\"a\"")));
}

TEST(Metrics, WholeNumbersAreExact) {
  Metrics m;
  m.Set("bytes", {}, static_cast<double>(int64_t{1} << 50));
  m.Set("cores", {}, 0.25);
  m.Set("negative", {}, -3);
  std::string page = m.Render();
  EXPECT_THAT(page, HasSubstr("bytes 1125899906842624\n"));
  EXPECT_THAT(page, HasSubstr("cores 0.25\n"));
  EXPECT_THAT(page, HasSubstr("negative -3\n"));
}

}  // namespace
}  // namespace autoscale
