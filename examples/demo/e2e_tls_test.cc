// End to end with real daemons and mutual TLS, as the test cluster (and so the demo and the other
// end-to-end tests) runs them: the agents registered over TLS, and each link refuses what the
// issue's attacker would try, an incoming migration the scheduler did not order included. No guest
// is booted: the monitor link is covered by the other end-to-end tests, which run with the same
// certificates.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "autoscale/api/agent.pb.h"
#include "autoscale/base/units.h"
#include "autoscale/rpc/agent_peer/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/tls.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/test_ca.h"
#include "gtest/gtest.h"

namespace autoscale::demo {
namespace {

using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;

TEST(EndToEndTls, DaemonsTalkMutualTlsAndRefuseStrangers) {
  AUTOSCALE_REQUIRE_OPENSSL();
  absl::StatusOr<testing::Binaries> bin = FindBinaries();
  AUTOSCALE_REQUIRE(bin.ok() ? "" : std::string(bin.status().message()));
  ClusterOptions options;
  options.bin = *bin;
  options.nodes = {{.name = "a", .total = {4000, 4 * kGiB}},
                   {.name = "b", .total = {4000, 4 * kGiB}}};
  absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  ASSERT_TRUE(c.admin_security().tls());

  // Both agents registered with the scheduler over mutual TLS, as their own nodes.
  absl::StatusOr<api::v1::ListNodesResponse> nodes = c.SchedulerNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->nodes_size(), 2);

  // A plaintext scheduler client is refused, and so is one of another CA.
  std::unique_ptr<rpc::scheduler::SchedulerService> plain =
      *rpc::scheduler::NewGrpcClient(c.scheduler_address(), absl::Seconds(5));
  EXPECT_EQ(plain->ListNodes(api::v1::ListRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  absl::StatusOr<testing::TestCa> other = testing::TestCa::Create(c.dir() + "/other-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<rpc::TlsFiles> forged = other->Issue("admin", "spiffe://autoscale.test/admin");
  ASSERT_TRUE(forged.ok()) << forged.status();
  forged->ca = c.dir() + "/pki/ca.pem";
  std::unique_ptr<rpc::scheduler::SchedulerService> stranger = *rpc::scheduler::NewGrpcClient(
      c.scheduler_address(), absl::Seconds(5), *rpc::Security::MutualTls(*forged));
  EXPECT_EQ(stranger->ListNodes(api::v1::ListRequest()).status().code(),
            absl::StatusCode::kUnavailable);

  // Node b's own certificate: it may not re-register node a (say, to redirect a migration
  // stream) nor place a VM.
  absl::StatusOr<rpc::Security> node_b =
      rpc::Security::MutualTls({.cert = c.dir() + "/pki/node-b.pem",
                                .key = c.dir() + "/pki/node-b.key",
                                .ca = c.dir() + "/pki/ca.pem"});
  ASSERT_TRUE(node_b.ok()) << node_b.status();
  std::unique_ptr<rpc::scheduler::SchedulerService> b =
      *rpc::scheduler::NewGrpcClient(c.scheduler_address(), absl::Seconds(5), *node_b);
  api::v1::RegisterNodeRequest reg;
  reg.set_node("a");
  reg.mutable_total()->set_milli_cpu(1000000);
  reg.mutable_total()->set_memory_bytes(1024 * kGiB);
  reg.set_agent_address("127.0.0.1:9");
  absl::StatusOr<api::v1::RegisterNodeResponse> hijack = b->RegisterNode(reg);
  EXPECT_EQ(hijack.status().code(), absl::StatusCode::kPermissionDenied) << hijack.status();
  EXPECT_NE(
      hijack.status().message().find("spiffe://autoscale.test/node/b may not register node a"),
      std::string::npos)
      << hijack.status();
  // ... nor re-register its own node larger, to pull the placements to itself: node b keeps its
  // size (its agent's registration is otherwise taken: keep its address).
  reg.set_node("b");
  for (const api::v1::NodeState& n : nodes->nodes()) {
    if (n.node() == "b") reg.set_agent_address(n.agent_address());
  }
  absl::StatusOr<api::v1::RegisterNodeResponse> bigger = b->RegisterNode(reg);
  ASSERT_TRUE(bigger.ok()) << bigger.status();
  EXPECT_EQ(bigger->node().total().milli_cpu(), 4000);
  EXPECT_EQ(bigger->node().total().memory_bytes(), 4 * kGiB);
  // A node the scheduler does not know: its agent registers it within the default cap (no
  // --max_node_total was given).
  absl::StatusOr<rpc::Security> node_c =
      c.ClientSecurity("node-c", "spiffe://autoscale.test/node/c");
  ASSERT_TRUE(node_c.ok()) << node_c.status();
  reg.set_node("c");
  reg.set_agent_address("127.0.0.1:9");
  absl::StatusOr<api::v1::RegisterNodeResponse> huge =
      (*rpc::scheduler::NewGrpcClient(c.scheduler_address(), absl::Seconds(5), *node_c))
          ->RegisterNode(reg);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kPermissionDenied) << huge.status();
  EXPECT_NE(huge.status().message().find("the operator's cap for a new node"), std::string::npos)
      << huge.status();

  // A certificate of the cluster's CA for another trust domain: refused, though an admin's (the
  // scheduler takes its trust domain from its own certificate).
  absl::StatusOr<rpc::Security> staging =
      c.ClientSecurity("staging-admin", "spiffe://staging/admin");
  ASSERT_TRUE(staging.ok()) << staging.status();
  absl::StatusOr<api::v1::ListNodesResponse> foreign =
      (*rpc::scheduler::NewGrpcClient(c.scheduler_address(), absl::Seconds(5), *staging))
          ->ListNodes(rpc::scheduler::WithVersion(api::v1::ListRequest()));
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kPermissionDenied) << foreign.status();
  EXPECT_NE(foreign.status().message().find("spiffe://staging/admin"), std::string::npos)
      << foreign.status();

  api::v1::PlaceVmRequest place;
  place.set_vm("x");
  EXPECT_EQ(b->PlaceVm(place).status().code(), absl::StatusCode::kPermissionDenied);
  nodes = c.SchedulerNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  for (const api::v1::NodeState& n : nodes->nodes()) {
    EXPECT_NE(n.agent_address(), "127.0.0.1:9") << n.node();
  }

  // The agents' migration endpoint refuses a plaintext peer before anything starts.
  std::unique_ptr<rpc::agent_peer::MigrationPeer> peer = *rpc::agent_peer::NewGrpcClient(
      absl::StrCat("unix:", c.dir(), "/agent-a.sock"), absl::Seconds(5));
  api::v1::PrepareIncomingRequest incoming;
  incoming.set_order_id(1);
  incoming.mutable_vm()->set_name("evil");
  EXPECT_EQ(peer->PrepareIncoming(incoming).status().code(), absl::StatusCode::kUnavailable);

  // Node b's agent, authenticated, asks node a's to start an incoming VM the scheduler never
  // ordered there (with a kernel of its choosing): refused after a's agent asked the scheduler,
  // and nothing is started.
  std::unique_ptr<rpc::agent_peer::MigrationPeer> b_peer = *rpc::agent_peer::NewGrpcClient(
      absl::StrCat("unix:", c.dir(), "/agent-a.sock"), absl::Seconds(5), *node_b);
  incoming.mutable_vm()->mutable_spec()->set_kernel("/tmp/evil-kernel");
  absl::StatusOr<api::v1::PrepareIncomingResponse> forged_incoming =
      b_peer->PrepareIncoming(incoming);
  EXPECT_EQ(forged_incoming.status().code(), absl::StatusCode::kPermissionDenied)
      << forged_incoming.status();
  absl::StatusOr<api::v1::AgentStatus> a = c.AgentStatus("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(testing::HasEvent(*a, "evil", api::v1::EVENT_KIND_INCOMING_REFUSED))
      << a->DebugString();
  EXPECT_FALSE(testing::HasEvent(*a, "evil", api::v1::EVENT_KIND_INCOMING_PREPARED));

  // QEMU's certificate for node b's migration streams (what a guest that escapes QEMU could take)
  // is not node b's identity: the scheduler and node a's agent grant it nothing.
  absl::StatusOr<rpc::Security> qemu_b =
      rpc::Security::MutualTls({.cert = c.dir() + "/pki/node-b-migration.pem",
                                .key = c.dir() + "/pki/node-b-migration.key",
                                .ca = c.dir() + "/pki/ca.pem"});
  ASSERT_TRUE(qemu_b.ok()) << qemu_b.status();
  api::v1::MigrationOrdersRequest orders =
      rpc::scheduler::WithVersion(api::v1::MigrationOrdersRequest());
  orders.set_node("b");
  EXPECT_EQ((*rpc::scheduler::NewGrpcClient(c.scheduler_address(), absl::Seconds(5), *qemu_b))
                ->GetMigrationOrders(orders)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*rpc::agent_peer::NewGrpcClient(absl::StrCat("unix:", c.dir(), "/agent-a.sock"),
                                             absl::Seconds(5), *qemu_b))
                ->PrepareIncoming(incoming)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace autoscale::demo
