// Temporary directories for tests: unique, short (unix socket paths must stay under 108 bytes,
// so they are made under /tmp rather than under Bazel's long TEST_TMPDIR), and removed with
// their contents when the test is done, also when it fails.
//
//   TempDir dir("qmp");                      // /tmp/qmp-Xq3bZ1
//   std::string socket = dir.path() + "/qmp.sock";
#pragma once

#include <string>
#include <string_view>

namespace autoscale::testing {

class TempDir {
 public:
  // Creates /tmp/<prefix>-XXXXXX; aborts if it cannot (a test cannot go on without it).
  explicit TempDir(std::string_view prefix = "autoscale");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace autoscale::testing
