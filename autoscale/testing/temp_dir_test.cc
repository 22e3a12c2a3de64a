#include "autoscale/testing/temp_dir.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::testing {
namespace {

TEST(TempDir, IsMadeAndRemovedWithItsContents) {
  std::string path;
  {
    TempDir dir("tempdir");
    path = dir.path();
    EXPECT_THAT(path, ::testing::StartsWith("/tmp/tempdir-"));
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    std::ofstream(path + "/file") << "x";
    TempDir other("tempdir");
    EXPECT_NE(other.path(), path);
  }
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << path << " is still there";
}

}  // namespace
}  // namespace autoscale::testing
