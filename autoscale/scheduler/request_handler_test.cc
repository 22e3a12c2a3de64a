#include "autoscale/scheduler/request_handler.h"

#include <memory>

#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

api::Resources R(int64_t cpu, int64_t mem) {
  api::Resources r;
  r.set_milli_cpu(cpu);
  r.set_memory_bytes(mem);
  return r;
}

class HandlerTest : public ::testing::Test {
 protected:
  HandlerTest() : ledger_({.placement = {.randomize = false}}), handler_(ledger_, {250, kGiB}) {}

  void SetUp() override {
    api::RegisterNodeRequest node;
    node.set_node("n1");
    *node.mutable_total() = R(4000, 16 * kGiB);
    node.set_agent_address("n1:7000");
    absl::StatusOr<api::RegisterNodeResponse> r = client_.RegisterNode(node);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->node().watermark_fraction(), 0.9);
    api::PlaceVmRequest place = rpc::scheduler::WithVersion(api::PlaceVmRequest());
    place.set_vm("vm1");
    place.mutable_bounds()->set_min_cu(1);
    place.mutable_bounds()->set_max_cu(8);
    absl::StatusOr<api::PlaceVmResponse> p = handler_.PlaceVm(place);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->node(), "n1");
    EXPECT_EQ(p->permit().milli_cpu(), 250);  // min size, default compute unit
  }

  api::PermitRequest Ask(int64_t cpu, int64_t mem) {
    api::PermitRequest r;
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
  absl::StatusOr<api::PermitResponse> p = client_.Request(Ask(1000, 4 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->protocol_version(), api::PROTOCOL_VERSION_1);
  EXPECT_EQ(p->permit().milli_cpu(), 1000);
  EXPECT_EQ(p->permit().memory_bytes(), 4 * kGiB);
  EXPECT_FALSE(p->has_migration());
}

TEST_F(HandlerTest, WrongProtocolVersionIsRefused) {
  for (int v : {0, 2}) {
    api::PermitRequest r = Ask(1000, 4 * kGiB);
    r.set_protocol_version(static_cast<api::ProtocolVersion>(v));
    absl::StatusOr<api::PermitResponse> p = handler_.Request(r);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition) << v;
    EXPECT_NE(p.status().message().find("protocol version"), std::string::npos);
  }
  api::ListRequest list;
  EXPECT_EQ(handler_.ListVms(list).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ledger_.GetVm("vm1")->permit, (core::Resources{250, kGiB}));
}

TEST_F(HandlerTest, ImpossibleRequestsGetClearErrors) {
  struct Case {
    const char* name;
    api::PermitRequest request;
    absl::StatusCode code;
    const char* says;
  };
  api::PermitRequest no_resources = Ask(0, 0);
  no_resources.clear_resources();
  api::PermitRequest no_node = Ask(500, kGiB);
  no_node.clear_node();
  api::PermitRequest no_cu = Ask(500, kGiB);
  no_cu.clear_compute_unit();
  api::PermitRequest unknown_vm = Ask(500, kGiB);
  unknown_vm.set_vm("ghost");
  api::PermitRequest unknown_node = Ask(500, kGiB);
  unknown_node.set_node("ghost");
  api::PermitRequest bad_last = Ask(500, kGiB);
  *bad_last.mutable_last_permit() = R(-1, kGiB);
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
  };
  for (const Case& c : cases) {
    absl::StatusOr<api::PermitResponse> p = client_.Request(c.request);
    EXPECT_EQ(p.status().code(), c.code) << c.name << ": " << p.status();
    EXPECT_NE(p.status().message().find(c.says), std::string::npos) << c.name << ": " << p.status();
  }
  EXPECT_EQ(ledger_.GetVm("vm1")->permit, (core::Resources{250, kGiB}));
  bool counted = false;
  for (const auto& c : handler_.Counts()) {
    if (c.method == "Request" && c.code == absl::StatusCode::kInvalidArgument) {
      EXPECT_EQ(c.count, 7u);
      counted = true;
    }
  }
  EXPECT_TRUE(counted);
}

TEST_F(HandlerTest, AsyncRequestAnswers) {
  absl::StatusOr<api::PermitResponse> got;
  handler_.RequestAsync(rpc::scheduler::WithVersion(Ask(500, 2 * kGiB)),
                        [&](absl::StatusOr<api::PermitResponse> p) { got = std::move(p); });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->permit().milli_cpu(), 500);
}

TEST_F(HandlerTest, MigrationOrdersAndResults) {
  api::RegisterNodeRequest n2;
  n2.set_node("n2");
  *n2.mutable_total() = R(4000, 16 * kGiB);
  n2.set_agent_address("n2:7000");
  ASSERT_TRUE(client_.RegisterNode(n2).ok());
  api::RegisterNodeRequest low;  // n1 with a watermark of 0.15 (600m/2.4GiB): vm2 must go
  low.set_node("n1");
  *low.mutable_total() = R(4000, 16 * kGiB);
  low.set_watermark(0.15);
  ASSERT_TRUE(client_.RegisterNode(low).ok());
  api::PlaceVmRequest place = rpc::scheduler::WithVersion(api::PlaceVmRequest());
  place.set_vm("vm2");
  place.set_node("n1");
  place.set_migratable(true);
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(8);
  *place.mutable_initial() = R(500, 2 * kGiB);
  ASSERT_TRUE(handler_.PlaceVm(place).ok());
  api::MigrationOrdersRequest for_n1;
  for_n1.set_node("n1");
  absl::StatusOr<api::MigrationOrdersResponse> orders = client_.GetMigrationOrders(for_n1);
  ASSERT_TRUE(orders.ok()) << orders.status();
  ASSERT_EQ(orders->orders_size(), 1);
  EXPECT_EQ(orders->orders(0).vm(), "vm2");
  EXPECT_EQ(orders->orders(0).target_agent_address(), "n2:7000");
  api::ListRequest list = rpc::scheduler::WithVersion(api::ListRequest());
  list.set_node("n1");
  absl::StatusOr<api::ListVmsResponse> vms = handler_.ListVms(list);
  ASSERT_TRUE(vms.ok());
  ASSERT_EQ(vms->vms_size(), 2);
  EXPECT_TRUE(vms->vms(1).migrating());
  api::MigrationResult done;
  done.set_order_id(orders->orders(0).id());
  done.set_vm("vm2");
  done.set_succeeded(true);
  ASSERT_TRUE(client_.ReportMigration(done).ok());
  EXPECT_EQ(ledger_.GetVm("vm2")->node, "n2");
  EXPECT_EQ(client_.ReportMigration(done).status().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<api::ListNodesResponse> nodes =
      handler_.ListNodes(rpc::scheduler::WithVersion(api::ListRequest()));
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->nodes_size(), 2);
  EXPECT_EQ(nodes->nodes(1).reserved().milli_cpu(), 500);
  absl::StatusOr<api::StatusResponse> status =
      handler_.GetStatus(rpc::scheduler::WithVersion(api::StatusRequest()));
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->truncated_file().empty());
}

}  // namespace
}  // namespace autoscale::scheduler
