#include "autoscale/rpc/monitor/agent_token.h"

#include <fstream>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale::rpc::monitor {
namespace {

TEST(AgentToken, NewTokensAre32RandomBytesInHex) {
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string token = NewAgentToken();
    ASSERT_EQ(token.size(), 64u) << token;
    EXPECT_EQ(token.find_first_not_of("0123456789abcdef"), std::string::npos) << token;
    EXPECT_TRUE(seen.insert(token).second) << "a token came twice: " << token;
  }
}

TEST(AgentToken, ReadBack) {
  testing::TempDir dir("token");
  const std::string path = dir.path() + "/agent-token";
  const std::string token = NewAgentToken();
  std::ofstream(path) << token;
  absl::StatusOr<std::string> read = ReadAgentToken(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, token);
}

TEST(AgentToken, BadFilesAreErrorsNamingThem) {
  testing::TempDir dir("token");
  const std::string missing = dir.path() + "/none";
  absl::StatusOr<std::string> r = ReadAgentToken(missing);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find(missing), std::string::npos) << r.status();

  const std::string short_file = dir.path() + "/short";
  std::ofstream(short_file) << "abc";
  r = ReadAgentToken(short_file);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find(short_file), std::string::npos) << r.status();

  const std::string huge = dir.path() + "/huge";
  std::ofstream(huge) << std::string(5000, 'x');
  r = ReadAgentToken(huge);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
}

TEST(AgentToken, Equality) {
  const std::string token = NewAgentToken();
  EXPECT_TRUE(TokensEqual(token, std::string(token)));
  std::string last = token;
  last.back() = last.back() == '0' ? '1' : '0';
  EXPECT_FALSE(TokensEqual(token, last));
  std::string first = token;
  first.front() = first.front() == '0' ? '1' : '0';
  EXPECT_FALSE(TokensEqual(token, first));
  EXPECT_FALSE(TokensEqual(token, token.substr(0, 63)));
  EXPECT_FALSE(TokensEqual(token, ""));
}

}  // namespace
}  // namespace autoscale::rpc::monitor
