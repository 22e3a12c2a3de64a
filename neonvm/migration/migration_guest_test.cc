// Live migration of the booted test guest: a file of random data must have the same checksum
// on both sides, and the vCPUs and memory plugged before the migration are there after it.
//
// With the guest writing memory the whole time (the load generator rewrites 64 MiB pass after
// pass and, stopped on the target, checks every word it wrote) the migration switches to
// postcopy. Under TCG, QEMU 10.0.2's precopy loses an occasional guest write (a page written
// through a stale TLB entry is not marked dirty: 1 word wrong in 5 of 6 runs with auto-converge,
// 1 of 6 without, two vCPUs); postcopy came through every run. So precopy is tested here with an
// idle guest. KVM tracks dirty pages in hardware and is not affected.
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/guest/console.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/migration/migration.h"

namespace autoscale::neonvm::migration {
namespace {

class MigrationGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_GUEST();
    auto image = testing::GuestWithLoadgen(dir_.path());
    ASSERT_TRUE(image.ok()) << image.status();
    auto spec = testing::GuestSpec("mig-guest");
    ASSERT_TRUE(spec.ok()) << spec.status();
    spec->initrd = image->initrd;
    auto booted = testing::Boot(*spec);
    ASSERT_TRUE(booted.ok()) << booted.status();
    booted_ = std::move(*booted);
  }

  std::string Run(guest::GuestConsole& console, const std::string& command) {
    auto out = console.Run(command, absl::Seconds(60));
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  // Migrates the guest (while it writes memory, if `writing`) and checks what arrives.
  void MigrateAndCheck(const MigrationOptions& options, bool writing, bool expect_postcopy) {
    guest::GuestConsole& console = *booted_.console;
    int64_t base_kib = 0;
    ASSERT_TRUE(absl::SimpleAtoi(Run(console, testing::kMemTotalKibCommand), &base_kib));
    hotplug::VmResizer resizer(booted_.vm->qmp(), booted_.vm->spec());
    ASSERT_TRUE(resizer.Resize({2, 512 * kMiB}).ok());
    // The guest onlines the plugged memory and CPU asynchronously: migrate once it has.
    const std::string mem_total = absl::StrCat(base_kib + 256 * 1024);
    ASSERT_EQ(testing::WaitForGuest(console, testing::kMemTotalKibCommand, mem_total), mem_total);
    ASSERT_EQ(testing::WaitForGuest(console, "nproc", "2"), "2");
    std::string md5 = Run(console,
                          "dd if=/dev/urandom of=/tmp/blob bs=1M count=32 2>/dev/null && "
                          "md5sum /tmp/blob");
    ASSERT_EQ(md5.size(), 32 + 2 + 9u) << md5;
    std::string pid;
    if (writing) {
      pid = Run(console, "loadgen --memory-mib=64 >/tmp/loadgen.out 2>&1 & echo $!");
      // Let it make a pass or two first, so the migration starts with dirty memory.
      Run(console, "sleep 1");
    }

    auto migrated = LiveMigrate(*booted_.vm, options);
    ASSERT_TRUE(migrated.ok()) << migrated.status();
    EXPECT_FALSE(booted_.vm->Running());
    const MigrationStats& stats = migrated->stats;
    EXPECT_EQ(stats.postcopy, expect_postcopy);
    EXPECT_GT(stats.transferred_bytes, writing ? 64 * kMiB : 32 * kMiB);
    EXPECT_GT(stats.total_time, absl::ZeroDuration());
    RecordProperty("total_time_ms", absl::StrCat(absl::ToInt64Milliseconds(stats.total_time)));
    RecordProperty("downtime_ms", absl::StrCat(absl::ToInt64Milliseconds(stats.downtime)));
    RecordProperty("passes", absl::StrCat(stats.passes));

    auto target_console = guest::GuestConsole::Connect(migrated->vm->serial_path());
    ASSERT_TRUE(target_console.ok())
        << target_console.status() << "; target QEMU " << migrated->vm->ExitDescription()
        << "; its log: " << migrated->vm->LogTail();
    guest::GuestConsole& tc = **target_console;
    if (writing) {
      // The load generator wrote through the whole migration; it checks every word on stopping.
      std::string report =
          Run(tc, absl::StrCat("kill -TERM ", pid, "; wait ", pid, "; cat /tmp/loadgen.out"));
      EXPECT_TRUE(absl::StrContains(report, "verified")) << report;
      EXPECT_FALSE(absl::StrContains(report, "CORRUPT")) << report;
    }
    EXPECT_EQ(Run(tc, "md5sum /tmp/blob"), md5);
    EXPECT_EQ(Run(tc, "nproc"), "2");
    EXPECT_EQ(Run(tc, testing::kMemTotalKibCommand), mem_total);
    hotplug::VmResizer on_target(migrated->vm->qmp(), migrated->vm->spec());
    auto size = on_target.Current();
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(*size, (hotplug::VmSize{2, 512 * kMiB}));
    // The migrated VM is still resizable.
    auto grown = on_target.Resize({3, 768 * kMiB});
    EXPECT_TRUE(grown.ok()) << grown.status();
  }

  testing::TempDir dir_;
  testing::BootedVm booted_;
};

TEST_F(MigrationGuestTest, PrecopyKeepsTheDataOfAnIdleGuest) {
  MigrateAndCheck(MigrationOptions{}, /*writing=*/false, /*expect_postcopy=*/false);
}

TEST_F(MigrationGuestTest, PostcopyKeepsTheDataOfAGuestThatWritesMemory) {
  MigrationOptions options;
  options.allow_postcopy = true;
  options.postcopy_after_passes = 1;
  options.auto_converge = false;
  MigrateAndCheck(options, /*writing=*/true, /*expect_postcopy=*/true);
}

}  // namespace
}  // namespace autoscale::neonvm::migration
