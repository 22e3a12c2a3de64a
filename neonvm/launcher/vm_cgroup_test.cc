// QEMU in a host cgroup of its own, with real QEMU (no guest) and real cgroups: every thread of
// QEMU in the group, the quota from the spec's milli-CPU, the memory cap, SetCpuLimit, and the
// group removed at Stop and when the Vm is destroyed; the spec's switch to run without.
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/host_cgroup.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::neonvm::launcher {
namespace {

std::string Read(const std::string& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripSuffix(text.str(), "\n"));
}

class VmCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_QEMU();
    AUTOSCALE_REQUIRE_ROOT();
    absl::BitGen bits;
    parent_path_ = absl::StrCat("/neonvm-test-", absl::Uniform<uint32_t>(bits));
    auto parent = HostCgroup::Create(parent_path_);
    if (!parent.ok()) GTEST_SKIP() << "no writable host cgroups: " << parent.status();
    parent_ = std::move(*parent);
  }

  VmSpec Spec(const std::string& name) {
    VmSpec spec = testing::NoGuestSpec(name);
    spec.cgroup.mode = HostCgroupSpec::Mode::kRequired;
    spec.cgroup.parent = parent_path_;
    return spec;
  }

  std::string cg_file() const { return parent_->v2() ? "cpu.max" : "cpu.cfs_quota_us"; }

  std::string parent_path_;
  // Destroyed after the VMs of each test (declared first): removed once they are gone.
  std::unique_ptr<HostCgroup> parent_;
};

TEST_F(VmCgroupTest, QemuAndAllItsThreadsRunInAGroupWithTheQuotaAndTheCap) {
  VmSpec spec = Spec("quota");
  spec.cpus_use = 2;
  spec.cpu_milli = 1500;
  spec.cgroup.memory_overhead_bytes = 300 * kMiB;
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  HostCgroup* cg = (*vm)->cgroup();
  ASSERT_NE(cg, nullptr);
  EXPECT_TRUE(absl::StartsWith(cg->path(), parent_path_ + "/quota.")) << cg->path();
  ASSERT_TRUE((*vm)->Resume().ok());

  // Every thread, the vCPUs included (two here, created after QEMU was moved).
  int threads = 0;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", (*vm)->pid(), "/task"))) {
    std::string cgroups = Read(task.path().string() + "/cgroup");
    for (const char* c : {":cpu:", ":cpuacct:", ":memory:"}) {
      if (cg->v2()) c = "0::";
      EXPECT_TRUE(absl::StrContains(cgroups, absl::StrCat(c, cg->path(), "\n")))
          << task.path() << " " << c << ": " << cgroups;
    }
    ++threads;
  }
  EXPECT_GE(threads, 3);  // the main loop and two vCPUs at least

  EXPECT_EQ(*cg->CpuQuota(), 150000);
  EXPECT_EQ((*vm)->cpu_milli(), 1500);
  EXPECT_EQ(Read(cg->memory_dir() + (cg->v2() ? "/memory.max" : "/memory.limit_in_bytes")),
            absl::StrCat(4 * 256 * kMiB + 300 * kMiB));
  ASSERT_TRUE((*vm)->SetCpuLimit(250).ok());
  EXPECT_EQ(*cg->CpuQuota(), 25000);
  EXPECT_EQ((*vm)->cpu_milli(), 250);
  EXPECT_EQ((*vm)->SetCpuLimit(-5).code(), absl::StatusCode::kInvalidArgument);

  std::string dir = cg->cpu_dir(), memory_dir = cg->memory_dir();
  ASSERT_TRUE((*vm)->Stop().ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(std::filesystem::exists(memory_dir));
}

TEST_F(VmCgroupTest, TheQuotaDefaultsToWholeCpusAndTheGroupGoesWithTheVm) {
  VmSpec spec = Spec("whole");
  spec.cpus_use = 3;
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_NE((*vm)->cgroup(), nullptr);
  EXPECT_EQ(*(*vm)->cgroup()->CpuQuota(), 300000);
  std::string dir = (*vm)->cgroup()->cpuacct_dir();
  EXPECT_TRUE(std::filesystem::exists(dir));
  vm->reset();  // killed, never stopped
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST_F(VmCgroupTest, OffRunsQemuWithoutAGroup) {
  VmSpec spec = Spec("off");
  spec.cgroup.mode = HostCgroupSpec::Mode::kOff;
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ((*vm)->cgroup(), nullptr);
  EXPECT_EQ((*vm)->SetCpuLimit(500).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*vm)->cpu_milli(), 0);
  std::string cgroups = Read(absl::StrCat("/proc/", (*vm)->pid(), "/cgroup"));
  EXPECT_FALSE(absl::StrContains(cgroups, parent_path_)) << cgroups;
}

TEST_F(VmCgroupTest, RequiredFailsWithAClearErrorWhenTheGroupCannotBeSetUp) {
  VmSpec spec = Spec("cannot");
  spec.cpu_milli = 5;  // 500 us per period: below the kernel's 1 ms minimum
  auto vm = Vm::Start(spec);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "host cgroup")) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), cg_file())) << vm.status();

  spec.cgroup.mode = HostCgroupSpec::Mode::kAuto;  // runs without, and logs why
  auto without = Vm::Start(spec);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ((*without)->cgroup(), nullptr);
}

}  // namespace
}  // namespace autoscale::neonvm::launcher
