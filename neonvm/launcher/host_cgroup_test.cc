// HostCgroup on the machine's real cgroups: creating a group in every controller, the CPU quota
// and memory cap files, moving a process with its threads, CPU accounting, removal, and the
// clean-up of groups a killed process left behind.
#include "neonvm/launcher/host_cgroup.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "autoscale/base/subprocess.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"

namespace autoscale::neonvm::launcher {
namespace {

std::string Read(const std::string& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripSuffix(text.str(), "\n"));
}

// A parent group of the test's own, removed at the end (after the groups in it).
class HostCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_ROOT();
    absl::BitGen bits;
    parent_path_ = absl::StrCat("/neonvm-test-", absl::Uniform<uint32_t>(bits));
    auto parent = HostCgroup::Create(parent_path_);
    if (!parent.ok()) GTEST_SKIP() << "no writable host cgroups: " << parent.status();
    parent_ = std::move(*parent);
  }

  std::string Path(const std::string& name) { return parent_path_ + "/" + name; }

  std::string parent_path_;
  std::unique_ptr<HostCgroup> parent_;
};

TEST_F(HostCgroupTest, SetsTheQuotaAndTheCapAndMovesAProcessWithItsThreads) {
  auto cg = HostCgroup::Create(Path("a"));
  ASSERT_TRUE(cg.ok()) << cg.status();
  HostCgroup& g = **cg;
  for (const std::string& dir : {g.cpu_dir(), g.cpuacct_dir(), g.memory_dir()}) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }

  ASSERT_TRUE(g.SetCpuLimit(250).ok());
  if (!g.v2()) {
    EXPECT_EQ(Read(g.cpu_dir() + "/cpu.cfs_quota_us"), "25000");
    EXPECT_EQ(Read(g.cpu_dir() + "/cpu.cfs_period_us"), "100000");
  } else {
    EXPECT_EQ(Read(g.cpu_dir() + "/cpu.max"), "25000 100000");
  }
  EXPECT_EQ(*g.CpuQuota(), 25000);
  ASSERT_TRUE(g.SetCpuLimit(1250).ok());
  EXPECT_EQ(*g.CpuQuota(), 125000);
  ASSERT_TRUE(g.ClearCpuLimit().ok());
  EXPECT_EQ(*g.CpuQuota(), -1);
  EXPECT_EQ(g.SetCpuLimit(0).code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(g.SetMemoryLimit(64 * kMiB).ok());
  EXPECT_EQ(Read(g.memory_dir() + (g.v2() ? "/memory.max" : "/memory.limit_in_bytes")),
            absl::StrCat(64 * kMiB));
  EXPECT_EQ(g.SetMemoryLimit(0).code(), absl::StatusCode::kInvalidArgument);

  // A shell with a spinning child: both processes' tasks must end up in the group.
  auto child = Subprocess::Start({"sh", "-c", "while :; do :; done"});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(g.SetCpuLimit(100).ok());
  ASSERT_TRUE(g.Attach((*child)->pid()).ok());
  std::string cgroups = Read(absl::StrCat("/proc/", (*child)->pid(), "/cgroup"));
  for (const char* c : {":cpu:", ":cpuacct:", ":memory:"}) {
    if (g.v2()) break;
    EXPECT_TRUE(absl::StrContains(cgroups, absl::StrCat(c, g.path(), "\n"))) << c << cgroups;
  }
  EXPECT_EQ(Read(g.cpu_dir() + "/cgroup.procs"), absl::StrCat((*child)->pid()));

  // The kernel accounts the spinning process's CPU time to the group.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (*g.CpuUsageNs() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_GT(*g.CpuUsageNs(), 0);

  // Not removable while a process is in it; the error names the directory.
  absl::Status busy = g.Remove();
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(busy.message(), g.path())) << busy;
  (*child)->Kill();
  ASSERT_TRUE(g.Remove().ok());
  for (const std::string& dir : {g.cpu_dir(), g.cpuacct_dir(), g.memory_dir()}) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
  EXPECT_TRUE(g.Remove().ok());  // idempotent
}

TEST_F(HostCgroupTest, TheDestructorRemovesTheGroup) {
  std::string dir;
  {
    auto cg = HostCgroup::Create(Path("b"));
    ASSERT_TRUE(cg.ok()) << cg.status();
    dir = (*cg)->cpu_dir();
    EXPECT_TRUE(std::filesystem::is_directory(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// The agent sets the quota of a group the process that started QEMU made: through Open, which
// must leave the group to its owner.
TEST_F(HostCgroupTest, OpensAnExistingGroupWithoutOwningIt) {
  auto made = HostCgroup::Create(Path("c"));
  ASSERT_TRUE(made.ok()) << made.status();
  {
    auto opened = HostCgroup::Open(Path("c"));
    ASSERT_TRUE(opened.ok()) << opened.status();
    ASSERT_TRUE((*opened)->SetCpuLimit(750).ok());
    EXPECT_EQ(*(*made)->CpuQuota(), 75000);
    EXPECT_EQ((*opened)->memory_dir(), (*made)->memory_dir());
  }
  EXPECT_TRUE(std::filesystem::is_directory((*made)->cpu_dir())) << "Open's handle removed it";
  absl::Status missing = HostCgroup::Open(Path("none")).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.message(), Path("none"))) << missing;
}

TEST_F(HostCgroupTest, RefusesAPathThatIsNotAbsolute) {
  EXPECT_EQ(HostCgroup::Create("neonvm/x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostCgroup::Create("/").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostCgroup::Open("/neonvm/../etc").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HostCgroupTest, RemovesOnlyEmptyGroupsLeftBehind) {
  auto left = HostCgroup::Create(Path("left"));
  auto busy = HostCgroup::Create(Path("busy"));
  ASSERT_TRUE(left.ok() && busy.ok());
  auto child = Subprocess::Start({"sleep", "60"});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE((*busy)->Attach((*child)->pid()).ok());

  // Young groups are spared (a VM's group is empty for a moment before QEMU joins it).
  EXPECT_EQ(HostCgroup::RemoveOrphans(parent_path_), 0);
  EXPECT_TRUE(std::filesystem::exists((*left)->cpu_dir()));

  EXPECT_GE(HostCgroup::RemoveOrphans(parent_path_, absl::ZeroDuration()), 1);
  EXPECT_FALSE(std::filesystem::exists((*left)->cpu_dir()));
  EXPECT_FALSE(std::filesystem::exists((*left)->memory_dir()));
  EXPECT_TRUE(std::filesystem::exists((*busy)->cpu_dir()));
  EXPECT_TRUE((*left)->Remove().ok());  // its owner finds it gone: fine
  (*child)->Kill();
}

}  // namespace
}  // namespace autoscale::neonvm::launcher
