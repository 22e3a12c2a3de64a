#include "examples/goal/goal_cli.h"

#include <string>

#include "autoscale/base/proto_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"

namespace autoscale::examples {
namespace {

using ::testing::HasSubstr;

rapidjson::Document RunFile(const std::string& file) {
  auto input = ReadFile("examples/goal/testdata/" + file);
  EXPECT_TRUE(input.ok()) << input.status();
  auto out = RunGoal(*input);
  EXPECT_TRUE(out.ok()) << out.status();
  rapidjson::Document doc;
  doc.Parse(out->c_str());
  EXPECT_FALSE(doc.HasParseError()) << *out;
  return doc;
}

TEST(RunGoal, ReferenceWorkedExample) {
  rapidjson::Document d = RunFile("worked_example.json");
  EXPECT_EQ(d["goalCu"].GetUint(), 4u);
  EXPECT_EQ(d["desired"]["milliCpu"].GetInt64(), 1000);
  EXPECT_EQ(d["desired"]["memoryBytes"].GetInt64(), int64_t{4} << 30);
  EXPECT_STREQ(d["decidedBy"].GetString(), "cpu");
  const auto& b = d["breakdown"];
  EXPECT_NEAR(b["cpuCu"].GetDouble(), 4.444, 1e-3);
  EXPECT_NEAR(b["memoryCu"].GetDouble(), 2.667, 1e-3);
  EXPECT_TRUE(b["lfcCu"].IsNull());
  EXPECT_TRUE(b["hasAllMetrics"].GetBool());
}

TEST(RunGoal, LfcWorkingSet) {
  rapidjson::Document d = RunFile("lfc.json");
  const auto& b = d["breakdown"];
  EXPECT_DOUBLE_EQ(b["lfcEstimatePages"].GetDouble(), 200000);
  EXPECT_DOUBLE_EQ(b["lfcProjectedPages"].GetDouble(), 205000);
  EXPECT_EQ(d["goalCu"].GetUint(), 3u);
  EXPECT_STREQ(d["decidedBy"].GetString(), "memoryTotal");
}

TEST(RunGoal, MissingMetricsKeepCurrentSize) {
  rapidjson::Document d = RunFile("no_metrics.json");
  EXPECT_EQ(d["goalCu"].GetUint(), 0u);
  EXPECT_EQ(d["desired"]["milliCpu"].GetInt64(), 1000) << "never below what the VM uses";
  EXPECT_STREQ(d["decidedBy"].GetString(), "currentUsage");
  EXPECT_FALSE(d["breakdown"]["hasAllMetrics"].GetBool());
}

TEST(RunGoal, ClearErrors) {
  struct Case {
    const char* input;
    const char* want;
  } cases[] = {
      {"", "JSON syntax error"},
      {"{\"bounds\": {\"minCu\": 1, \"maxCu\": 2}}", "computeUnit: required"},
      {R"({"computeUnit": {"milliCpu": 250, "memoryBytes": 1}})", "bounds: required"},
      {R"({"computeUnit": {"milliCpu": 0, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1}})",
       "computeUnit.milliCpu"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 2, "maxCu": 1}})",
       "bounds.maxCu"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1},
           "config": {"lfcWindowSizeMinutes": 1}})",
       "lfcWindowSizeMinutes"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1},
           "metrics": {"loadAvg1m": -1}})",
       "loadAvg1m"},
      // The sum minWait + window - 1 overflowed in validation; ComputeGoal then took a span of
      // 2^31 windows over 60.
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1},
           "config": {"enableLFCMetrics": true, "lfcMinWaitBeforeDownscaleMinutes": 2147483647,
                      "lfcWindowSizeMinutes": 2},
           "metrics": {"lfcWorkingSetPages": [1, 2, 3]}})",
       "lfcMinWaitBeforeDownscaleMinutes"},
      {R"({"computeUnit": {"milliCpu": 1000000, "memoryBytes": 1099511627776},
           "bounds": {"minCu": 1, "maxCu": 4294967295}})",
       "bounds.maxCu"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 9223372036854775807},
           "bounds": {"minCu": 1, "maxCu": 2}})",
       "computeUnit.memoryBytes"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1},
           "metrics": {"lfcWorkingSetPages": [1, "NaN"]}})",
       "lfcWorkingSetPages[1]"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1},
           "using": {"memoryBytes": -5}})",
       "using.memoryBytes"},
      {R"({"computeUnit": {"milliCpu": 1, "memoryBytes": 1}, "bounds": {"minCu": 1, "maxCu": 1},
           "metrics": {"loadAvg": 1}})",
       "metrics.loadAvg"},
  };
  for (const Case& c : cases) {
    auto out = RunGoal(c.input);
    ASSERT_FALSE(out.ok()) << c.input;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(out.status().message()), HasSubstr(c.want)) << c.input;
  }
}

}  // namespace
}  // namespace autoscale::examples
