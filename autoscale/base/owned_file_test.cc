#include "autoscale/base/owned_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

TEST(OwnedFile, WritesANewFileWithItsModeAndReadsItBack) {
  testing::TempDir dir("owned");
  const std::string path = dir.path() + "/f";
  ASSERT_TRUE(WriteNewFile(path, "1234\n", 0600).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<std::string> read = ReadOwnedFile(path, 32, /*root_may_own=*/false);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "1234\n");
}

TEST(OwnedFile, NeverWritesOverAFileOrThroughALink) {
  testing::TempDir dir("owned");
  const std::string target = dir.path() + "/target";
  std::ofstream(target) << "kept";
  absl::Status s = WriteNewFile(target, "new", 0644);
  EXPECT_FALSE(s.ok()) << "wrote over an existing file";
  EXPECT_NE(s.message().find(target), std::string::npos) << s;

  const std::string link = dir.path() + "/link";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_FALSE(WriteNewFile(link, "new", 0644).ok()) << "wrote through a link";
  std::ifstream in(target);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "kept");
}

TEST(OwnedFile, ReadsOnlyRegularFilesOfItsOwner) {
  testing::TempDir dir("owned");
  const std::string missing = dir.path() + "/none";
  EXPECT_EQ(ReadOwnedFile(missing, 32, false).status().code(), absl::StatusCode::kNotFound);

  const std::string file = dir.path() + "/file";
  std::ofstream(file) << "secret";
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(symlink(file.c_str(), link.c_str()), 0);
  EXPECT_FALSE(ReadOwnedFile(link, 32, false).ok()) << "read through a link";

  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(ReadOwnedFile(fifo, 32, false).status().code(), absl::StatusCode::kPermissionDenied);

  // At most one byte past the limit is kept: the caller sees a file that is too large.
  const std::string large = dir.path() + "/large";
  std::ofstream(large) << std::string(5000, 'x');
  absl::StatusOr<std::string> read = ReadOwnedFile(large, 100, false);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_GT(read->size(), 100u);
  EXPECT_LT(read->size(), 5000u);

  if (geteuid() == 0) {
    // Root's own file, as a process of another user would see it, is the case root_may_own is
    // for; here (as root) a file of another user's is refused either way.
    ASSERT_EQ(chown(file.c_str(), 65534, 65534), 0) << std::strerror(errno);
    for (bool root_may_own : {false, true}) {
      absl::StatusOr<std::string> r = ReadOwnedFile(file, 32, root_may_own);
      EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
      EXPECT_NE(r.status().message().find("uid 65534"), std::string::npos) << r.status();
    }
  }
}

TEST(OwnedFile, RootsFileIsReadByAnotherUserOnlyIfRootMayOwnIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: a root-owned file read as another user";
  testing::TempDir dir("owned");
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0) << std::strerror(errno);
  const std::string file = dir.path() + "/roots";
  ASSERT_TRUE(WriteNewFile(file, "token", 0644).ok());
  // As nobody (the effective user only, so that root comes back).
  ASSERT_EQ(seteuid(65534), 0) << std::strerror(errno);
  absl::StatusOr<std::string> allowed = ReadOwnedFile(file, 32, /*root_may_own=*/true);
  absl::StatusOr<std::string> refused = ReadOwnedFile(file, 32, /*root_may_own=*/false);
  ASSERT_EQ(seteuid(0), 0) << std::strerror(errno);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(*allowed, "token");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << refused.status();
  EXPECT_NE(refused.status().message().find("uid 0"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace autoscale
