#include "autoscale/rpc/monitor/agent_token.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

// The token file sits in a VM's runtime directory, which QEMU's user owns once QEMU drops root:
// that user may replace the file. A link to another secret is not read (and so not sent to the
// VM's monitor), a FIFO does not block the reader, and a file of another user is refused.
TEST(AgentToken, ALinkAFifoOrAnotherUsersFileIsRefused) {
  testing::TempDir dir("token");
  const std::string secret = dir.path() + "/secret";
  std::ofstream(secret) << NewAgentToken();
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(symlink(secret.c_str(), link.c_str()), 0);
  absl::StatusOr<std::string> r = ReadAgentToken(link);
  EXPECT_FALSE(r.ok()) << "read through a link";
  EXPECT_NE(r.status().message().find(link), std::string::npos) << r.status();

  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  r = ReadAgentToken(fifo);  // returns: a blocking open would hang here
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();

  if (geteuid() != 0) {
    GTEST_LOG_(INFO) << "not root: a file of another user is not tried";
  } else {
    ASSERT_EQ(chown(secret.c_str(), 65534, 65534), 0) << strerror(errno);  // nobody's
    r = ReadAgentToken(secret);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
    EXPECT_NE(r.status().message().find("uid 65534"), std::string::npos) << r.status();
  }
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
