// Live migration without a guest: a paused VM with hot-plugged CPUs and a virtio-mem request
// arrives with both, a running VM arrives running, an unreachable target and a migration that
// runs out of time fail with the source still running; the target starts with the source's CPU
// quota.
#include "neonvm/migration/migration.h"

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/migration/source.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::migration {
namespace {

using launcher::Vm;

std::unique_ptr<Vm> StartVm(const std::string& name) {
  auto vm = Vm::Start(testing::NoGuestSpec(name));
  EXPECT_TRUE(vm.ok()) << vm.status();
  return vm.ok() ? std::move(*vm) : nullptr;
}

std::string Status(Vm& vm) {
  auto s = vm.qmp().Execute("query-status");
  return s.ok() ? *s : std::string(s.status().message());
}

hotplug::VmResizerOptions NoGuest() {
  hotplug::VmResizerOptions o;
  o.guest_acknowledges_cpus = false;
  return o;
}

TEST(Migration, PausedVmArrivesWithItsHotPluggedCpusAndMemory) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> source = StartVm("mig-paused");
  ASSERT_NE(source, nullptr);
  hotplug::VmResizer resizer(source->qmp(), source->spec(), NoGuest());
  ASSERT_TRUE(resizer.Resize({3, 256 * kMiB}).ok());
  // A quota below the vCPUs' (a permit of 2.5 CPUs on 3 vCPUs), where cgroups are writable.
  if (source->cgroup() != nullptr) {
    ASSERT_TRUE(source->SetCpuLimit(2500).ok());
  }
  // No guest plugs memory, but the request itself must travel.
  ASSERT_TRUE(source->qmp()
                  .Execute("qom-set", R"({"path":"/machine/peripheral/vm0",
                                          "property":"requested-size","value":536870912})")
                  .ok());

  auto migrated = LiveMigrate(*source);
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  Vm& target = *migrated->vm;
  if (source->cgroup() != nullptr) {
    // The target ran in its own group with the source's quota from its start.
    ASSERT_NE(target.cgroup(), nullptr);
    EXPECT_EQ(target.cpu_milli(), 2500);
    EXPECT_EQ(*target.cgroup()->CpuQuota(), 250000);
  }
  EXPECT_FALSE(source->Running());
  EXPECT_EQ(source->ExitDescription(), "exited with status 0");
  // Paused before, paused after.
  EXPECT_TRUE(absl::StrContains(Status(target), R"("running":false)")) << Status(target);

  hotplug::VmResizer on_target(target.qmp(), target.spec(), NoGuest());
  auto size = on_target.Current();
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->cpus, 3);
  std::string cpus = *target.qmp().Execute("query-hotpluggable-cpus");
  EXPECT_TRUE(absl::StrContains(cpus, "/machine/peripheral/cpu1")) << cpus;
  EXPECT_TRUE(absl::StrContains(cpus, "/machine/peripheral/cpu2")) << cpus;
  auto requested = target.qmp().Execute(
      "qom-get", R"({"path":"/machine/peripheral/vm0","property":"requested-size"})");
  ASSERT_TRUE(requested.ok());
  EXPECT_EQ(*requested, "536870912");

  const MigrationStats& stats = migrated->stats;
  EXPECT_GT(stats.total_time, absl::ZeroDuration());
  EXPECT_GT(stats.transferred_bytes, 0);
  // Boot memory, the virtio-mem region, and firmware and option ROMs.
  EXPECT_GE(stats.ram_bytes, 256 * kMiB + 768 * kMiB);
  EXPECT_LT(stats.ram_bytes, 256 * kMiB + 768 * kMiB + 16 * kMiB);
  EXPECT_FALSE(stats.postcopy);
}

TEST(Migration, RunningVmArrivesRunning) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> source = StartVm("mig-running");
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resume().ok());
  auto migrated = LiveMigrate(*source);
  ASSERT_TRUE(migrated.ok()) << migrated.status();
  EXPECT_TRUE(absl::StrContains(Status(*migrated->vm), R"("status":"running")"))
      << Status(*migrated->vm);
  EXPECT_FALSE(source->Running());
  // And it migrates on from there.
  auto again = LiveMigrate(*migrated->vm);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(absl::StrContains(Status(*again->vm), R"("status":"running")"));
}

TEST(Migration, UnreachableTargetLeavesTheSourceRunning) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> source = StartVm("mig-unreachable");
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resume().ok());
  auto target = StartTarget(*source);
  ASSERT_TRUE(target.ok()) << target.status();
  (*target)->Kill();
  auto stats = Migrate(*source, **target);
  EXPECT_FALSE(stats.ok());
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "migrating VM mig-unreachable"))
      << stats.status();
  EXPECT_TRUE(source->Running());
  EXPECT_TRUE(absl::StrContains(Status(*source), R"("status":"running")")) << Status(*source);
}

TEST(MigrationUri, OnlyTheAddressesATargetGives) {
  for (const char* ok : {"unix:/tmp/neonvm-ab12/migration.sock", "tcp:10.77.0.2:4444",
                         "tcp:node-b.example:49152", "tcp:[fd00::2]:4444"}) {
    EXPECT_TRUE(CheckTargetUri(ok).ok()) << ok;
  }
  for (const char* bad :
       {"exec:touch /tmp/x", "file:/etc/passwd", "fd:3", "rdma:10.0.0.1:4444",
        "unix:", "unix:x.sock", "unix:/a,b", "tcp:10.77.0.2", "tcp:10.77.0.2:0",
        "tcp:10.77.0.2:99999", "tcp:h st:1", "tcp:[fd00::2:4444", "tcp:h:1,ipv4=on", ""}) {
    absl::Status s = CheckTargetUri(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(s.message(), "is not unix:/PATH or tcp:HOST:PORT")) << s;
  }
}

// A target agent answering with QEMU's "exec:" would have the source host run its command.
TEST(Migration, ASourceRefusesAnAddressNoTargetGives) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> vm = StartVm("mig-exec");
  ASSERT_NE(vm, nullptr);
  const std::string marker = std::string(getenv("TEST_TMPDIR")) + "/exec-ran";
  std::unique_ptr<Source> source = NewQmpSource(vm->qmp(), vm->spec());
  absl::Status s = source->Start("exec:touch " + marker, absl::Seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // Refused before QEMU is asked, so nothing can have run.
  EXPECT_FALSE(std::filesystem::exists(marker));
  EXPECT_TRUE(vm->Running());
}

TEST(Migration, CancelsAtItsTimeoutAndKeepsTheSource) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> source = StartVm("mig-timeout");
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resume().ok());
  auto target = StartTarget(*source);
  ASSERT_TRUE(target.ok()) << target.status();
  MigrationOptions slow;
  slow.max_bandwidth_bytes_per_second = 64 << 10;  // the firmware's pages alone take seconds
  slow.timeout = absl::Milliseconds(300);
  auto stats = Migrate(*source, **target, slow);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kDeadlineExceeded) << stats.status();
  EXPECT_TRUE(absl::StrContains(stats.status().message(), "cancelled")) << stats.status();
  EXPECT_FALSE((*target)->Running());
  EXPECT_TRUE(source->Running());
  // The source is usable: it can be resized and migrated again.
  hotplug::VmResizer resizer(source->qmp(), source->spec(), NoGuest());
  EXPECT_TRUE(resizer.Resize({2, 256 * kMiB}).ok());
  auto retry = LiveMigrate(*source);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(hotplug::VmResizer(retry->vm->qmp(), retry->vm->spec(), NoGuest()).Current()->cpus, 2);
}

// The way two agents migrate: the source is reached through its second QMP socket (its owner
// keeps the first), only the spec and the devices travel to the side that starts the target
// (which refuses devices that are not vCPU slots of its own), and the source is quit once the
// target runs.
TEST(Migration, ThroughTheAgentSocketWithTheTargetStartedApart) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> source = StartVm("mig-split");
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->Resume().ok());
  hotplug::VmResizer resizer(source->qmp(), source->spec(), NoGuest());
  ASSERT_TRUE(resizer.Resize({2, 256 * kMiB}).ok());

  auto agent = qmp::QmpClient::Connect("unix:" + source->agent_qmp_path());
  ASSERT_TRUE(agent.ok()) << agent.status();
  std::unique_ptr<Source> sender = NewQmpSource(**agent, source->spec());
  auto devices = sender->CaptureDevices(absl::Seconds(10));
  ASSERT_TRUE(devices.ok()) << devices.status();
  EXPECT_EQ(devices->cpu_device_add_args.size(), 1u);
  ASSERT_TRUE(devices->virtio_mem_requested_bytes.has_value());

  // The devices may come from another node: a vCPU is plugged only into a slot the target's own
  // QEMU offers, as its own CPU type, and nothing but the slot and a device id is taken (these
  // are refused; the target QEMU started for the last two is stopped).
  const std::string cpu = devices->cpu_device_add_args[0];
  for (const std::string& forged :
       {absl::StrReplaceAll(cpu, {{R"("id":)", R"("drive":"/etc/shadow","id":)"}}),
        absl::StrReplaceAll(cpu, {{R"("driver":")", R"("driver":"virtio-blk-pci","x":")"}}),
        absl::StrReplaceAll(cpu, {{R"("id":")", R"("id":"cpu1,romfile=/x)"}}),
        absl::StrReplaceAll(cpu, {{R"("core-id":1)", R"("core-id":9999)"}}),
        absl::StrReplaceAll(cpu, {{R"("driver":")", R"("driver":"x)"}})}) {
    ASSERT_NE(forged, cpu);
    Devices bad = *devices;
    bad.cpu_device_add_args = {forged};
    auto refused = StartIncoming(source->spec(), bad);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
        << forged << ": " << refused.status();
  }
  Devices too_much = *devices;
  too_much.virtio_mem_requested_bytes = 4 * kGiB;
  EXPECT_EQ(StartIncoming(source->spec(), too_much).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto target = StartIncoming(source->spec(), *devices);
  ASSERT_TRUE(target.ok()) << target.status();
  auto uri = Listen(**target, /*allow_postcopy=*/false);
  ASSERT_TRUE(uri.ok()) << uri.status();
  LocalTarget local(**target, *uri);
  MigrationResult r = RunMigration(*sender, local, MigrationOptions{});
  ASSERT_EQ(r.outcome, Outcome::kMigrated) << r.error;
  EXPECT_TRUE(r.source_was_running);
  EXPECT_TRUE(absl::StrContains(Status(**target), R"("status":"running")")) << Status(**target);
  EXPECT_EQ(hotplug::VmResizer((*target)->qmp(), (*target)->spec(), NoGuest()).Current()->cpus, 2);
  // The source's owner sees it exit once the migration quits it.
  for (int i = 0; i < 100 && source->Running(); ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(source->Running());
}

}  // namespace
}  // namespace autoscale::neonvm::migration
