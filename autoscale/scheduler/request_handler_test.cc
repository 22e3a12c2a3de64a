#include "autoscale/scheduler/request_handler.h"

#include <memory>

#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

api::v1::Resources R(int64_t cpu, int64_t mem) {
  api::v1::Resources r;
  r.set_milli_cpu(cpu);
  r.set_memory_bytes(mem);
  return r;
}

class HandlerTest : public ::testing::Test {
 protected:
  HandlerTest() : ledger_({.placement = {.randomize = false}}), handler_(ledger_, {250, kGiB}) {}

  void SetUp() override {
    api::v1::RegisterNodeRequest node;
    node.set_node("n1");
    *node.mutable_total() = R(4000, 16 * kGiB);
    node.set_agent_address("n1:7000");
    absl::StatusOr<api::v1::RegisterNodeResponse> r = client_.RegisterNode(node);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->node().watermark_fraction(), 0.9);
    api::v1::PlaceVmRequest place = rpc::scheduler::WithVersion(api::v1::PlaceVmRequest());
    place.set_vm("vm1");
    place.mutable_bounds()->set_min_cu(1);
    place.mutable_bounds()->set_max_cu(8);
    absl::StatusOr<api::v1::PlaceVmResponse> p = handler_.PlaceVm(place);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->node(), "n1");
    EXPECT_EQ(p->permit().milli_cpu(), 250);  // min size, default compute unit
  }

  api::v1::PermitRequest Ask(int64_t cpu, int64_t mem) {
    api::v1::PermitRequest r;
    r.set_node("n1");
    r.set_vm("vm1");
    r.mutable_compute_unit()->set_milli_cpu(250);
    r.mutable_compute_unit()->set_memory_bytes(kGiB);
    *r.mutable_resources() = R(cpu, mem);
    return r;
  }

  ledger::Ledger ledger_;
  RequestHandler handler_;
  rpc::scheduler::InProcessClient client_{handler_};
};

TEST_F(HandlerTest, GrantsThroughTheInProcessClient) {
  absl::StatusOr<api::v1::PermitResponse> p = client_.Request(Ask(1000, 4 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->protocol_version(), api::v1::PROTOCOL_VERSION_1);
  EXPECT_EQ(p->permit().milli_cpu(), 1000);
  EXPECT_EQ(p->permit().memory_bytes(), 4 * kGiB);
  EXPECT_FALSE(p->has_migration());
}

TEST_F(HandlerTest, WrongProtocolVersionIsRefused) {
  for (int v : {0, 2}) {
    api::v1::PermitRequest r = Ask(1000, 4 * kGiB);
    r.set_protocol_version(static_cast<api::v1::ProtocolVersion>(v));
    absl::StatusOr<api::v1::PermitResponse> p = handler_.Request(r);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition) << v;
    EXPECT_NE(p.status().message().find("protocol version"), std::string::npos);
  }
  api::v1::ListRequest list;
  EXPECT_EQ(handler_.ListVms(list).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ledger_.GetVm("vm1")->permit, (core::Resources{250, kGiB}));
}

TEST_F(HandlerTest, ImpossibleRequestsGetClearErrors) {
  struct Case {
    const char* name;
    api::v1::PermitRequest request;
    absl::StatusCode code;
    const char* says;
  };
  api::v1::PermitRequest no_resources = Ask(0, 0);
  no_resources.clear_resources();
  api::v1::PermitRequest no_node = Ask(500, kGiB);
  no_node.clear_node();
  api::v1::PermitRequest no_cu = Ask(500, kGiB);
  no_cu.clear_compute_unit();
  api::v1::PermitRequest unknown_vm = Ask(500, kGiB);
  unknown_vm.set_vm("ghost");
  api::v1::PermitRequest unknown_node = Ask(500, kGiB);
  unknown_node.set_node("ghost");
  api::v1::PermitRequest bad_last = Ask(500, kGiB);
  *bad_last.mutable_last_permit() = R(-1, kGiB);
  // A name far over the limit (gRPC would carry up to 4 MiB): refused before anything looks it
  // up, and the error does not repeat it.
  api::v1::PermitRequest huge_vm = Ask(500, kGiB);
  huge_vm.set_vm(std::string(1 << 20, 'v'));
  const Case cases[] = {
      {"negative", Ask(-250, kGiB), absl::StatusCode::kInvalidArgument, "milliCpu"},
      {"above bounds", Ask(2250, kGiB), absl::StatusCode::kInvalidArgument, "above"},
      {"not whole CUs", Ask(250, kGiB + 1), absl::StatusCode::kInvalidArgument, "whole"},
      {"no resources", no_resources, absl::StatusCode::kInvalidArgument, "missing"},
      {"no node", no_node, absl::StatusCode::kInvalidArgument, "node is empty"},
      {"no compute unit", no_cu, absl::StatusCode::kInvalidArgument, "compute unit"},
      {"bad last permit", bad_last, absl::StatusCode::kInvalidArgument, "lastPermit"},
      {"unknown VM", unknown_vm, absl::StatusCode::kNotFound, "ghost"},
      {"unknown node", unknown_node, absl::StatusCode::kNotFound, "ghost"},
      {"huge VM name", huge_vm, absl::StatusCode::kInvalidArgument, "vm has 1048576 bytes"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<api::v1::PermitResponse> p = client_.Request(c.request);
    EXPECT_EQ(p.status().code(), c.code) << c.name << ": " << p.status();
    EXPECT_NE(p.status().message().find(c.says), std::string::npos) << c.name << ": " << p.status();
    EXPECT_LT(p.status().message().size(), 400u) << c.name;
  }
  EXPECT_EQ(ledger_.GetVm("vm1")->permit, (core::Resources{250, kGiB}));
  bool counted = false;
  for (const auto& c : handler_.Counts()) {
    if (c.method == "Request" && c.code == absl::StatusCode::kInvalidArgument) {
      EXPECT_EQ(c.count, 8u);
      counted = true;
    }
  }
  EXPECT_TRUE(counted);
}

TEST_F(HandlerTest, AsyncRequestAnswers) {
  absl::StatusOr<api::v1::PermitResponse> got;
  handler_.RequestAsync(rpc::scheduler::WithVersion(Ask(500, 2 * kGiB)),
                        [&](absl::StatusOr<api::v1::PermitResponse> p) { got = std::move(p); });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->permit().milli_cpu(), 500);
}

TEST_F(HandlerTest, MigrationOrdersAndResults) {
  api::v1::RegisterNodeRequest n2;
  n2.set_node("n2");
  *n2.mutable_total() = R(4000, 16 * kGiB);
  n2.set_agent_address("n2:7000");
  ASSERT_TRUE(client_.RegisterNode(n2).ok());
  api::v1::RegisterNodeRequest low;  // n1 with a watermark of 0.15 (600m/2.4GiB): vm2 must go
  low.set_node("n1");
  *low.mutable_total() = R(4000, 16 * kGiB);
  low.set_watermark(0.15);
  ASSERT_TRUE(client_.RegisterNode(low).ok());
  api::v1::PlaceVmRequest place = rpc::scheduler::WithVersion(api::v1::PlaceVmRequest());
  place.set_vm("vm2");
  place.set_node("n1");
  place.set_migratable(true);
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(8);
  *place.mutable_initial() = R(500, 2 * kGiB);
  ASSERT_TRUE(handler_.PlaceVm(place).ok());
  api::v1::MigrationOrdersRequest for_n1;
  for_n1.set_node("n1");
  absl::StatusOr<api::v1::MigrationOrdersResponse> orders = client_.GetMigrationOrders(for_n1);
  ASSERT_TRUE(orders.ok()) << orders.status();
  ASSERT_EQ(orders->orders_size(), 1);
  EXPECT_EQ(orders->orders(0).vm(), "vm2");
  EXPECT_EQ(orders->orders(0).target_agent_address(), "n2:7000");
  api::v1::ListRequest list = rpc::scheduler::WithVersion(api::v1::ListRequest());
  list.set_node("n1");
  absl::StatusOr<api::v1::ListVmsResponse> vms = handler_.ListVms(list);
  ASSERT_TRUE(vms.ok());
  ASSERT_EQ(vms->vms_size(), 2);
  EXPECT_TRUE(vms->vms(1).migrating());
  api::v1::MigrationResult done;
  done.set_order_id(orders->orders(0).id());
  done.set_vm("vm2");
  done.set_succeeded(true);
  ASSERT_TRUE(client_.ReportMigration(done).ok());
  EXPECT_EQ(ledger_.GetVm("vm2")->node, "n2");
  EXPECT_EQ(client_.ReportMigration(done).status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<api::v1::ListNodesResponse> nodes =
      handler_.ListNodes(rpc::scheduler::WithVersion(api::v1::ListRequest()));
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->nodes_size(), 2);
  EXPECT_EQ(nodes->nodes(1).reserved().milli_cpu(), 500);
  absl::StatusOr<api::v1::StatusResponse> status =
      handler_.GetStatus(rpc::scheduler::WithVersion(api::v1::StatusRequest()));
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->truncated_file().empty());
}

TEST_F(HandlerTest, NamesAndAddressesOverTheLimitAreRefused) {
  const std::string longest(ledger::kMaxNameBytes, 'n'), longer(ledger::kMaxNameBytes + 1, 'n');
  api::v1::RegisterNodeRequest node;
  node.set_node(longest);
  *node.mutable_total() = R(4000, 16 * kGiB);
  EXPECT_TRUE(client_.RegisterNode(node).ok());
  node.set_node(longer);
  EXPECT_EQ(client_.RegisterNode(node).status().code(), absl::StatusCode::kInvalidArgument);
  node.set_node("n2");
  node.set_agent_address(longer);
  EXPECT_EQ(client_.RegisterNode(node).status().code(), absl::StatusCode::kInvalidArgument);
  api::v1::PlaceVmRequest place;
  place.set_vm(longer);
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(1);
  EXPECT_EQ(client_.PlaceVm(place).status().code(), absl::StatusCode::kInvalidArgument);
  api::v1::UpdateVmBoundsRequest bounds;
  bounds.set_vm("vm1");
  bounds.set_node(longer);
  *bounds.mutable_bounds() = place.bounds();
  EXPECT_EQ(client_.UpdateVmBounds(bounds).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_.ListNodes().size(), 2u);
}

TEST_F(HandlerTest, NodeLifecycleThroughTheProtocol) {
  api::v1::RegisterNodeRequest node;
  node.set_node("n2");
  *node.mutable_total() = R(4000, 16 * kGiB);
  ASSERT_TRUE(client_.RegisterNode(node).ok());
  api::v1::PlaceVmRequest place;
  place.set_vm("vm2");
  place.set_node("n1");
  place.set_migratable(true);
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(4);
  ASSERT_TRUE(client_.PlaceVm(place).ok());

  // Bounds: vm1 (1..8) may go to 12 CU now.
  api::v1::UpdateVmBoundsRequest bounds;
  bounds.set_vm("vm1");
  bounds.set_node("n1");
  bounds.mutable_bounds()->set_min_cu(1);
  bounds.mutable_bounds()->set_max_cu(12);
  absl::StatusOr<api::v1::UpdateVmBoundsResponse> b = client_.UpdateVmBounds(bounds);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->vm().bounds().max_cu(), 12u);
  EXPECT_EQ(client_.Request(Ask(2500, 10 * kGiB))->permit().milli_cpu(), 2500);
  bounds.mutable_bounds()->set_max_cu(0);
  EXPECT_EQ(client_.UpdateVmBounds(bounds).status().code(), absl::StatusCode::kInvalidArgument);

  // Update: a lower total than reserved makes n1 over capacity.
  api::v1::UpdateNodeRequest update;
  update.set_node("n1");
  *update.mutable_total() = R(2000, 8 * kGiB);
  absl::StatusOr<api::v1::UpdateNodeResponse> u = client_.UpdateNode(update);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->node().over_capacity());
  EXPECT_EQ(u->node().watermark_fraction(), 0.9) << "a watermark of 0 leaves it as it was";

  // Drain: vm2 is ordered to n2, vm1 (not migratable) stays.
  api::v1::DrainNodeRequest drain;
  drain.set_node("n1");
  absl::StatusOr<api::v1::DrainNodeResponse> d = client_.DrainNode(drain);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->node().cordoned());
  EXPECT_TRUE(d->node().draining());
  ASSERT_EQ(d->migrating_size(), 1);
  EXPECT_EQ(d->migrating(0).vm(), "vm2");
  EXPECT_EQ(d->migrating(0).target_node(), "n2");
  EXPECT_GT(d->migrating(0).started_unix_micros(), 0);
  ASSERT_EQ(d->staying_size(), 1);
  EXPECT_EQ(d->staying(0), "vm1");
  EXPECT_FALSE(d->done());

  // Remove: refused while it holds VMs; by force, with what it drops.
  api::v1::RemoveNodeRequest remove;
  remove.set_node("n1");
  const absl::Status refused = client_.RemoveNode(remove).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  remove.set_force(true);
  absl::StatusOr<api::v1::RemoveNodeResponse> r = client_.RemoveNode(remove);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->dropped_vms_size(), 2);
  EXPECT_EQ(r->dropped_vms(0).vm(), "vm1");
  ASSERT_EQ(r->cancelled_migrations_size(), 1);
  EXPECT_EQ(r->cancelled_migrations(0).vm(), "vm2");

  // Cordon and uncordon n2.
  api::v1::CordonNodeRequest cordon;
  cordon.set_node("n2");
  cordon.set_cordon(true);
  EXPECT_TRUE(client_.CordonNode(cordon)->node().cordoned());
  cordon.set_cordon(false);
  EXPECT_FALSE(client_.CordonNode(cordon)->node().cordoned());
  cordon.set_node("n1");
  EXPECT_EQ(client_.CordonNode(cordon).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace autoscale::scheduler
