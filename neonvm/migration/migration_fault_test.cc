// Fault: the migration target is killed while pages are on their way. The migration fails, and
// the source keeps running and stays usable (it can be resized and migrated again).
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/migration/migration.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::migration {
namespace {

using launcher::Vm;

TEST(MigrationFault, TargetKilledMidMigrationLeavesTheSourceRunning) {
  AUTOSCALE_REQUIRE_QEMU();
  auto source = Vm::Start(testing::NoGuestSpec("mig-fault"));
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->Resume().ok());
  auto target = StartTarget(**source);
  ASSERT_TRUE(target.ok()) << target.status();

  // Slow enough that the migration is still sending when the target dies.
  MigrationOptions slow;
  slow.max_bandwidth_bytes_per_second = 256 << 10;
  qmp::EventQueue events((*source)->qmp(), {"MIGRATION"});
  absl::StatusOr<MigrationStats> result;
  std::thread migration([&] { result = Migrate(**source, **target, slow); });
  // Kill the target once the source reports the migration active.
  while (true) {
    auto e = events.Next(absl::Seconds(20));
    ASSERT_TRUE(e.ok()) << e.status();
    if (absl::StrContains(e->data, R"("status":"active")")) break;
  }
  (*target)->Kill();
  migration.join();

  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::StrContains(result.status().message(), "QEMU reports the migration failed"))
      << result.status();
  EXPECT_TRUE((*source)->Running());
  auto status = (*source)->qmp().Execute("query-status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(absl::StrContains(*status, R"("status":"running")")) << *status;

  hotplug::VmResizerOptions no_guest;
  no_guest.guest_acknowledges_cpus = false;
  hotplug::VmResizer resizer((*source)->qmp(), (*source)->spec(), no_guest);
  auto resized = resizer.Resize({2, 256 * kMiB});
  EXPECT_TRUE(resized.ok()) << resized.status();
  auto again = LiveMigrate(**source);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE((*source)->Running());
}

}  // namespace
}  // namespace autoscale::neonvm::migration
