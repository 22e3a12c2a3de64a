// End to end, with real processes and a booted guest: a VM that grows its node above the
// watermark is live-migrated to another node by the agents, with its memory intact, and keeps
// scaling there under the target's agent.
#include <set>
#include <string>

#include "absl/strings/str_join.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"

namespace autoscale::demo {
namespace {

using ::autoscale::api::v1::AgentStatus;
using ::autoscale::testing::AwaitStatus;
using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;
using ::autoscale::testing::HasEvent;
using ::autoscale::testing::VmStatus;

constexpr int64_t kCu = 512 * kMiB;

TEST(EndToEnd, AVmAboveTheWatermarkMigratesWithItsMemoryIntact) {
  AUTOSCALE_REQUIRE(testing::ClusterMissing());
  ClusterOptions options;
  options.bin = *FindBinaries();
  // Node a's watermark is 2 CU: two 1-CU VMs fit; vm1 growing to 2 CU puts the node above it,
  // and only vm1 (vm2 is not migratable) can leave.
  options.nodes = {{.name = "a", .total = {4000, 4 * kCu}, .watermark = 0.5},
                   {.name = "b", .total = {4000, 4 * kCu}}};
  auto cluster = Cluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  auto vm1 = c.AddGuest({.name = "vm1", .node = "a", .bounds = {1, 3}});
  ASSERT_TRUE(vm1.ok()) << vm1.status();
  // A second VM on node a, reserved only (at most two QEMU processes run at once: the guest and
  // its migration target).
  auto vm2 = c.Reserve({.name = "vm2", .node = "a", .bounds = {1, 1}, .migratable = false});
  ASSERT_TRUE(vm2.ok()) << vm2.status();
  auto ready = AwaitStatus(c, "a", absl::Seconds(90), [](const AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, "vm1");
    return vm != nullptr && vm->monitor_connected();
  });
  ASSERT_TRUE(ready.ok()) << ready.status();
  // A load whose memory the migration must carry over (the load generator checks every page).
  ASSERT_TRUE((*vm1)->AddLoad(/*memory_mib=*/64, /*cpu_threads=*/1).ok());

  ASSERT_TRUE(c.SetBounds("vm1", {2, 3}).ok());
  auto moved = AwaitStatus(c, "b", absl::Seconds(180), [](const AgentStatus& s) {
    return VmStatus(s, "vm1") != nullptr && HasEvent(s, "vm1", api::v1::EVENT_KIND_MIGRATED_IN);
  });
  ASSERT_TRUE(moved.ok()) << "vm1 did not arrive on node b: " << moved.status();
  // The source reports the result to the scheduler, lets the VM go, then logs it: after the
  // target has.
  auto source = AwaitStatus(c, "a", absl::Seconds(30), [](const AgentStatus& s) {
    return VmStatus(s, "vm1") == nullptr && HasEvent(s, "vm1", api::v1::EVENT_KIND_MIGRATED_OUT);
  });
  ASSERT_TRUE(source.ok()) << "node a did not let vm1 go: " << source.status();

  // The ledger moved the reservation: vm1 on b at 2 CU, node a back under its watermark.
  auto vms = c.SchedulerVms();
  ASSERT_TRUE(vms.ok()) << vms.status();
  std::set<std::string> found;
  for (const api::v1::VmState& v : vms->vms()) {
    found.insert(v.vm());
    EXPECT_FALSE(v.migrating()) << v.vm();
    if (v.vm() == "vm1") {
      EXPECT_EQ(v.node(), "b");
      EXPECT_EQ(v.permit().memory_bytes(), 2 * kCu);
    } else {
      EXPECT_EQ(v.node(), "a") << v.vm() << " is not migratable and stays";
    }
  }
  EXPECT_EQ(found, (std::set<std::string>{"vm1", "vm2"}));
  auto nodes = c.SchedulerNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  for (const api::v1::NodeState& n : nodes->nodes()) {
    if (n.node() == "a") {
      EXPECT_LE(n.reserved().memory_bytes(), n.watermark().memory_bytes());
    }
  }

  // The guest runs on b with its memory intact and its size kept.
  ASSERT_TRUE(c.ReattachGuest("vm1").ok());
  auto mem = (*vm1)->MemTotalBytes();
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_GT(*mem, kCu) << "2 CU of memory online after the migration";
  auto last = (*vm1)->StopLoad();
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->AllVerified())
      << last->started << " started; " << absl::StrJoin(last->lines, "\n");

  // The target's agent scales it: raising the minimum to 3 CU grows it on b.
  ASSERT_TRUE(c.SetBounds("vm1", {3, 3}).ok());
  auto grew = AwaitStatus(c, "b", absl::Seconds(60), [](const AgentStatus& s) {
    return testing::CurrentMemory(s, "vm1") == 3 * kCu;
  });
  ASSERT_TRUE(grew.ok()) << "vm1 did not grow on node b: " << grew.status();
}

}  // namespace
}  // namespace autoscale::demo
