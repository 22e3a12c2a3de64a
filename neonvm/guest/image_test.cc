// Finding the built guest, and adding files to an initramfs: the appended archive is unpacked
// with busybox cpio and compared with the originals.
#include "neonvm/guest/image.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace autoscale::neonvm::guest {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(std::getenv("TEST_TMPDIR")) + "/image_test";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  std::string dir_;
};

TEST_F(ImageTest, FindsTheGuestWhereTheEnvironmentSays) {
  setenv("AUTOSCALE_GUEST_DIR", dir_.c_str(), 1);
  EXPECT_EQ(GuestDir(), dir_);
  auto missing = FindGuestImage();
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "run neonvm/guest/build"))
      << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), dir_ + "/vmlinuz")) << missing.status();

  Write(dir_ + "/vmlinuz", "kernel");
  Write(dir_ + "/initrd.gz", "initrd");
  Write(dir_ + "/cmdline", "console=ttyS0 quiet\n");
  auto image = FindGuestImage();
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->kernel, dir_ + "/vmlinuz");
  EXPECT_EQ(image->initrd, dir_ + "/initrd.gz");
  EXPECT_EQ(image->cmdline, "console=ttyS0 quiet");
  unsetenv("AUTOSCALE_GUEST_DIR");
  EXPECT_TRUE(absl::EndsWith(GuestDir(), "/.cache/autoscale-guest")) << GuestDir();
}

TEST_F(ImageTest, AppendsFilesWithTheirLibrariesAndABootScript) {
  if (access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "needs /bin/busybox (busybox-static)";
  std::string loadgen = std::string(std::getenv("TEST_SRCDIR")) + "/" +
                        std::getenv("TEST_WORKSPACE") + "/neonvm/guest/loadgen";
  const std::string base = "BASE-ARCHIVE";  // 12 bytes: no padding needed
  Write(dir_ + "/base", base + "x");        // 13: padded to 16
  GuestImage in{"/k", dir_ + "/base", "quiet"};
  auto out = AddFiles(in, {{loadgen, "/usr/bin/loadgen"}}, "exec loadgen --memory-mib=1\n",
                      dir_ + "/initrd");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->initrd, dir_ + "/initrd");
  EXPECT_EQ(out->kernel, "/k");
  EXPECT_EQ(out->cmdline, "quiet");

  std::string initrd = Read(dir_ + "/initrd");
  ASSERT_EQ(initrd.substr(0, 13), base + "x");
  EXPECT_EQ(initrd.substr(13, 3), std::string(3, '\0'));
  ASSERT_EQ(initrd.substr(16, 6), "070701");
  Write(dir_ + "/overlay.cpio", initrd.substr(16));

  std::string unpacked = dir_ + "/unpacked";
  std::filesystem::create_directories(unpacked);
  std::string cmd = absl::StrCat("cd ", unpacked, " && /bin/busybox cpio -i -d < ", dir_,
                                 "/overlay.cpio 2>/dev/null");
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;

  EXPECT_EQ(Read(unpacked + "/usr/bin/loadgen"), Read(loadgen));
  struct stat st;
  ASSERT_EQ(stat((unpacked + "/usr/bin/loadgen").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR);
  // Its shared libraries and the dynamic loader, at their host paths.
  bool found_libc = false, found_loader = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(unpacked)) {
    std::string name = e.path().filename().string();
    found_libc |= name == "libc.so.6";
    found_loader |= absl::StartsWith(name, "ld-linux-x86-64.so");
  }
  EXPECT_TRUE(found_libc);
  EXPECT_TRUE(found_loader);
  EXPECT_EQ(Read(unpacked + "/etc/boot.sh"), "#!/bin/sh\nexec loadgen --memory-mib=1\n");
}

TEST_F(ImageTest, RefusesMissingFilesAndRelativeGuestPaths) {
  Write(dir_ + "/base", "b");
  GuestImage in{"/k", dir_ + "/base", ""};
  EXPECT_EQ(AddFiles(in, {{dir_ + "/nope", "/usr/bin/nope"}}, "", dir_ + "/o").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(AddFiles(in, {{dir_ + "/base", "usr/bin/x"}}, "", dir_ + "/o").status().code(),
            absl::StatusCode::kInvalidArgument);
  in.initrd = dir_ + "/no-initrd";
  EXPECT_EQ(AddFiles(in, {}, "echo", dir_ + "/o").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace autoscale::neonvm::guest
