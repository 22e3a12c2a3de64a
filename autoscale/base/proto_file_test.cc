#include "autoscale/base/proto_file.h"

#include <string>

#include "autoscale/api/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string TestData(const std::string& name) { return "autoscale/base/testdata/" + name; }

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(ReadProtoFile, ReadsJson) {
  api::v1::AgentConfig config;
  ASSERT_TRUE(ReadProtoFile(TestData("agent_ok.json"), config).ok());
  EXPECT_EQ(config.node(), "node-a");
  EXPECT_EQ(config.compute_unit().memory_bytes(), 1073741824);
  EXPECT_TRUE(config.scaling().enable_lfc_metrics());
  EXPECT_DOUBLE_EQ(config.scaling().load_average_fraction_target(), 0.9);
  EXPECT_FALSE(config.scaling().has_memory_usage_fraction_target());
  EXPECT_EQ(config.timings().scheduler_request_at_least_every().seconds(), 15);
  ASSERT_EQ(config.vms_size(), 1);
  EXPECT_EQ(config.vms(0).bounds().max_cu(), 8u);
}

TEST(ReadProtoFile, ReadsTextFormat) {
  api::v1::AgentConfig config;
  ASSERT_TRUE(ReadProtoFile(TestData("agent_ok.textproto"), config).ok());
  EXPECT_EQ(config.node(), "node-b");
  EXPECT_EQ(config.vms(0).bounds().min_cu(), 2u);
}

TEST(ReadProtoFile, WrongTypeNamesFileAndField) {
  api::v1::AgentConfig config;
  absl::Status s = ReadProtoFile(TestData("agent_bad_type.json"), config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s),
              AllOf(HasSubstr("agent_bad_type.json"),
                    HasSubstr("field scaling.loadAverageFractionTarget"), HasSubstr("\"lots\"")));
  EXPECT_EQ(config.node(), "") << "a failed parse leaves the message empty";
}

TEST(ReadProtoFile, UnknownFieldNamesFileAndField) {
  api::v1::AgentConfig config;
  absl::Status s = ReadProtoFile(TestData("agent_unknown_field.json"), config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s),
              AllOf(HasSubstr("agent_unknown_field.json"), HasSubstr("field vms[0].bounds.maxCU"),
                    HasSubstr("unknown field")));
}

TEST(ReadProtoFile, SyntaxErrorGivesLineAndColumn) {
  api::v1::AgentConfig config;
  absl::Status s = ReadProtoFile(TestData("agent_syntax.json"), config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), AllOf(HasSubstr("agent_syntax.json:3:"), HasSubstr("JSON syntax error")));
}

TEST(ReadProtoFile, TextFormatErrorNamesFileLineAndField) {
  api::v1::AgentConfig config;
  absl::Status s = ReadProtoFile(TestData("agent_bad.textproto"), config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), AllOf(HasSubstr("agent_bad.textproto:4:"), HasSubstr("memory_byte")));
}

TEST(ReadProtoFile, MissingFileAndUnknownExtension) {
  api::v1::AgentConfig config;
  absl::Status missing = ReadProtoFile(TestData("nope.json"), config);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing), HasSubstr("nope.json"));
  absl::Status ext = ReadProtoFile(TestData("agent_ok.json.bak"), config);
  EXPECT_THAT(Message(ext), HasSubstr("agent_ok.json.bak"));
}

TEST(ParseJsonProto, RejectsNonObjectsAndTrailingGarbage) {
  api::v1::Bounds bounds;
  EXPECT_THAT(Message(ParseJsonProto("[1, 2]", bounds, "stdin")),
              AllOf(HasSubstr("stdin"), HasSubstr("expected a JSON object")));
  EXPECT_THAT(Message(ParseJsonProto("{} {}", bounds, "stdin")), HasSubstr("stdin:1:"));
  EXPECT_THAT(Message(ParseJsonProto(R"({"minCu": -1})", bounds, "stdin")),
              HasSubstr("field minCu"));
}

TEST(ToJson, RoundTrips) {
  api::v1::Bounds bounds;
  bounds.set_min_cu(1);
  bounds.set_max_cu(9);
  std::string json = ToJson(bounds);
  api::v1::Bounds back;
  ASSERT_TRUE(ParseJsonProto(json, back, "roundtrip").ok()) << json;
  EXPECT_EQ(back.max_cu(), 9u);
}

}  // namespace
}  // namespace autoscale
