// The QEMU VM driver against real QEMU without a guest: the milli-CPU it reports for a VM whose
// partial vCPU was granted before its runner (re)started.
#include "autoscale/agent/vm_driver.h"

#include <memory>

#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/hotplug/resizer.h"

namespace autoscale::agent {
namespace {

TEST(QemuVmDriver, AGrantedPartialVcpuSurvivesReopening) {
  AUTOSCALE_REQUIRE_QEMU();
  auto vm = neonvm::launcher::Vm::Start(testing::NoGuestSpec("driver"));
  ASSERT_TRUE(vm.ok()) << vm.status();
  // Granted 1250m/256 MiB: 2 vCPUs run it (plugged here without a guest to acknowledge them).
  neonvm::hotplug::VmResizerOptions no_guest;
  no_guest.guest_acknowledges_cpus = false;
  neonvm::hotplug::VmResizer resizer((*vm)->qmp(), (*vm)->spec(), no_guest);
  ASSERT_TRUE(resizer.Resize({2, 256 * kMiB}).ok());

  api::VmConfig config;
  config.set_name("driver");
  config.set_qmp("unix:" + (*vm)->agent_qmp_path());
  *config.mutable_spec() = SpecToProto((*vm)->spec());
  const core::Resources cu{.milli_cpu = 250, .memory_bytes = 256 * kMiB};
  std::unique_ptr<VmDriverFactory> factory = NewQemuVmDriverFactory();

  // A runner restarted with its grant known reads it back exactly.
  absl::StatusOr<OpenedVm> opened = factory->Open(config, cu, /*granted_milli_cpu=*/1250);
  ASSERT_TRUE(opened.ok()) << opened.status();
  absl::StatusOr<core::Resources> now = opened->driver->Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, (core::Resources{1250, 256 * kMiB}));
  opened->driver.reset();
  opened->migration.reset();

  // Unknown, it reads what the vCPUs show (1 CU of memory does not match 2 vCPUs).
  opened = factory->Open(config, cu, /*granted_milli_cpu=*/0);
  ASSERT_TRUE(opened.ok()) << opened.status();
  now = opened->driver->Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->milli_cpu, 2000);
  // A grant the vCPUs no longer match (3 vCPUs for 2500m) is not believed.
  opened->driver.reset();
  opened->migration.reset();
  opened = factory->Open(config, cu, /*granted_milli_cpu=*/2500);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->driver->Current()->milli_cpu, 2000);
}

}  // namespace
}  // namespace autoscale::agent
