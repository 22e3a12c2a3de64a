// End to end, with real processes and a booted guest: draining a node moves every migratable VM
// off it (the guest by live migration through the agents; a ledger-only VM, whose guest stands
// for one elsewhere, by this test acting as its agent), keeps what is not migratable until it is
// released, and the empty node is then removed.
#include <map>
#include <memory>
#include <string>

#include "autoscale/base/units.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"

namespace autoscale::demo {
namespace {

using ::autoscale::testing::AwaitStatus;
using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;
using ::autoscale::testing::HasEvent;
using ::autoscale::testing::VmStatus;

constexpr int64_t kCu = 512 * kMiB;

TEST(EndToEnd, DrainMovesEveryMigratableVmAndTheEmptyNodeIsRemoved) {
  AUTOSCALE_REQUIRE(testing::ClusterMissing());
  ClusterOptions options;
  options.bin = *FindBinaries();
  options.nodes = {{.name = "a", .total = {4000, 4 * kCu}},
                   {.name = "b", .total = {4000, 6 * kCu}}};
  auto cluster = Cluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  // One guest on a (two QEMU processes while it migrates, the most this machine runs), and two
  // ledger-only VMs: one migratable, one not.
  auto vm1 = c.AddGuest({.name = "vm1", .node = "a", .bounds = {1, 2}});
  ASSERT_TRUE(vm1.ok()) << vm1.status();
  ASSERT_TRUE(c.Reserve({.name = "vm2", .node = "a", .bounds = {1, 1}}).ok());
  ASSERT_TRUE(
      c.Reserve({.name = "pinned", .node = "a", .bounds = {1, 1}, .migratable = false}).ok());
  auto ready = AwaitStatus(c, "a", absl::Seconds(90), [](const api::v1::AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, "vm1");
    return vm != nullptr && vm->monitor_connected();
  });
  ASSERT_TRUE(ready.ok()) << ready.status();

  auto scheduler =
      rpc::scheduler::NewGrpcClient(c.scheduler_address(), absl::Seconds(10), c.admin_security());
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  api::v1::DrainNodeRequest drain;
  drain.set_node("a");
  absl::StatusOr<api::v1::DrainNodeResponse> progress = (*scheduler)->DrainNode(drain);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->node().cordoned());
  EXPECT_TRUE(progress->node().draining());
  std::map<std::string, api::v1::MigrationOrder> orders;
  for (const api::v1::MigrationOrder& o : progress->migrating()) orders[o.vm()] = o;
  ASSERT_EQ(orders.size(), 2u) << progress->ShortDebugString();
  EXPECT_EQ(orders["vm1"].target_node(), "b");
  EXPECT_EQ(orders["vm2"].target_node(), "b");
  ASSERT_EQ(progress->staying_size(), 1);
  EXPECT_EQ(progress->staying(0), "pinned");
  EXPECT_FALSE(progress->done());

  // vm2's agent (this test) reports its move; a's agent live-migrates vm1.
  api::v1::MigrationResult moved;
  moved.set_order_id(orders["vm2"].id());
  moved.set_vm("vm2");
  moved.set_succeeded(true);
  ASSERT_TRUE((*scheduler)->ReportMigration(moved).ok());
  auto arrived = AwaitStatus(c, "b", absl::Seconds(180), [](const api::v1::AgentStatus& s) {
    return VmStatus(s, "vm1") != nullptr && HasEvent(s, "vm1", api::v1::EVENT_KIND_MIGRATED_IN);
  });
  ASSERT_TRUE(arrived.ok())
      << "vm1 did not arrive on node b: " << arrived.status()
      << "\nnode a: " << c.AgentStatus("a").value_or(api::v1::AgentStatus()).ShortDebugString();
  // The source reports the move to the scheduler before it logs it, and after the target logs
  // the arrival.
  auto left = AwaitStatus(c, "a", absl::Seconds(30), [](const api::v1::AgentStatus& s) {
    return HasEvent(s, "vm1", api::v1::EVENT_KIND_MIGRATED_OUT);
  });
  ASSERT_TRUE(left.ok()) << "node a did not report vm1's move: " << left.status();

  // Only the VM that is not migratable is left; the node cannot go while it is there.
  progress = (*scheduler)->DrainNode(drain);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_EQ(progress->migrating_size(), 0);
  EXPECT_EQ(progress->waiting_size(), 0);
  ASSERT_EQ(progress->staying_size(), 1);
  EXPECT_FALSE(progress->done());
  api::v1::RemoveNodeRequest remove;
  remove.set_node("a");
  EXPECT_EQ((*scheduler)->RemoveNode(remove).status().code(),
            absl::StatusCode::kFailedPrecondition);
  api::v1::ReleaseVmRequest release;
  release.set_vm("pinned");
  ASSERT_TRUE((*scheduler)->ReleaseVm(release).ok());
  progress = (*scheduler)->DrainNode(drain);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_TRUE(progress->done());

  absl::StatusOr<api::v1::RemoveNodeResponse> removed = (*scheduler)->RemoveNode(remove);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->dropped_vms_size(), 0);
  auto nodes = c.SchedulerNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->nodes_size(), 1);
  EXPECT_EQ(nodes->nodes(0).node(), "b");
  EXPECT_EQ(nodes->nodes(0).vm_count(), 2u);
  auto vms = c.SchedulerVms();
  ASSERT_TRUE(vms.ok()) << vms.status();
  for (const api::v1::VmState& v : vms->vms()) {
    EXPECT_EQ(v.node(), "b") << v.vm();
    EXPECT_FALSE(v.migrating()) << v.vm();
  }

  // The guest runs on b.
  ASSERT_TRUE(c.ReattachGuest("vm1").ok());
  auto mem = (*vm1)->MemTotalBytes();
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_GT(*mem, 0);
}

}  // namespace
}  // namespace autoscale::demo
