// The resizer with the booted test guest in a real host cgroup: the quota file follows every
// resize, up and down, and in order with the vCPUs (raised only after the plug, lowered before the
// unplug); the group is gone once the VM stops, and also when the test fails (the Vm removes it).
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/launcher/host_cgroup.h"

namespace autoscale::neonvm::hotplug {
namespace {

using launcher::HostCgroup;
using launcher::HostCgroupSpec;

TEST(ResizerCgroupTest, TheQuotaFollowsEveryResizeInOrder) {
  AUTOSCALE_REQUIRE_GUEST();
  AUTOSCALE_REQUIRE_ROOT();
  absl::BitGen bits;
  std::string parent_path = absl::StrCat("/neonvm-test-", absl::Uniform<uint32_t>(bits));
  auto parent = HostCgroup::Create(parent_path);
  if (!parent.ok()) GTEST_SKIP() << "no writable host cgroups: " << parent.status();

  auto spec = testing::GuestSpec("quota-order");
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec->cpu_milli = 750;
  spec->cgroup.mode = HostCgroupSpec::Mode::kRequired;
  spec->cgroup.parent = parent_path;
  auto booted = testing::Boot(*spec);
  ASSERT_TRUE(booted.ok()) << booted.status();
  launcher::Vm& vm = *booted->vm;
  HostCgroup* cg = vm.cgroup();
  ASSERT_NE(cg, nullptr);
  EXPECT_EQ(*cg->CpuQuota(), 75000);

  // Each quota change as "<quota before>-><quota after>@<vCPUs plugged at the time>".
  std::vector<std::string> changes;
  VmResizerOptions options;
  options.set_cpu_limit = [&](int milli) {
    int64_t before = *cg->CpuQuota();
    absl::Status s = vm.SetCpuLimit(milli);
    std::string cpus = *vm.qmp().Execute("query-hotpluggable-cpus");
    int plugged = 0;
    for (size_t pos = 0; (pos = cpus.find("\"qom-path\"", pos)) != std::string::npos; ++pos) {
      ++plugged;
    }
    changes.push_back(absl::StrCat(before, "->", *cg->CpuQuota(), "@", plugged));
    return s;
  };
  VmResizer resizer(vm.qmp(), vm.spec(), options);

  struct Step {
    int cpus;
    int milli;
  };
  for (Step step : std::vector<Step>{{2, 1500}, {3, 2250}, {3, 2500}, {2, 1250}, {1, 250}}) {
    auto reached = resizer.Resize({step.cpus, 256 * kMiB}, step.milli);
    ASSERT_TRUE(reached.ok()) << reached.status();
    EXPECT_EQ(*cg->CpuQuota(), launcher::CpuQuotaUs(step.milli)) << step.milli;
  }
  // Growing: raised with the new vCPUs in; shrinking: lowered with the old vCPUs still in.
  EXPECT_EQ(absl::StrJoin(changes, " "),
            "75000->150000@2 150000->225000@3 225000->250000@3 250000->125000@3 "
            "125000->25000@2");

  std::string dir = cg->cpu_dir();
  ASSERT_TRUE(vm.Stop().ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace autoscale::neonvm::hotplug
