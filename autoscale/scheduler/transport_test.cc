// The scheduler protocol's two transports give the same answers: the same calls, including
// refused ones, go to two identical schedulers, one through the gRPC client and server over
// loopback, the other through the in-process client. Answers must be equal message for message;
// errors must have the same code, and the gRPC client's message is the in-process one with the
// scheduler's address and the call in front.
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "autoscale/rpc/server.h"
#include "autoscale/scheduler/scheduler.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

using rpc::scheduler::SchedulerService;

api::v1::Resources R(int64_t cpu, int64_t mem) {
  api::v1::Resources r;
  r.set_milli_cpu(cpu);
  r.set_memory_bytes(mem);
  return r;
}

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (std::unique_ptr<Scheduler>* s : {&over_grpc_, &in_process_}) {
      absl::StatusOr<std::unique_ptr<Scheduler>> opened = Scheduler::Open(
          {.ledger = {.placement = {.randomize = false}, .seed = 1, .clock = &clock_}},
          std::make_unique<ledger::MemoryStore>());
      ASSERT_TRUE(opened.ok()) << opened.status();
      *s = *std::move(opened);
    }
    absl::StatusOr<std::unique_ptr<rpc::Server>> server =
        rpc::scheduler::StartGrpcServer(over_grpc_->service(), "127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    grpc_client_ = *rpc::scheduler::NewGrpcClient(server_->address(), absl::Seconds(10));
    in_process_client_ = std::make_unique<rpc::scheduler::InProcessClient>(in_process_->service());
  }

  // Makes the call both ways and compares the answers; true if it succeeded.
  template <typename Req, typename Resp>
  bool Same(const std::string& what, absl::StatusOr<Resp> (SchedulerService::*call)(const Req&),
            const Req& request) {
    const absl::StatusOr<Resp> remote = (grpc_client_.get()->*call)(request);
    const absl::StatusOr<Resp> local = (in_process_client_.get()->*call)(request);
    ++calls_;
    EXPECT_EQ(remote.status().code(), local.status().code())
        << what << ": over gRPC " << remote.status() << ", in process " << local.status();
    if (remote.ok() && local.ok()) {
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*remote, *local))
          << what << ": over gRPC " << remote->ShortDebugString() << "\n in process "
          << local->ShortDebugString();
      return true;
    }
    if (!remote.ok() && !local.ok()) {
      ++errors_;
      EXPECT_TRUE(absl::EndsWith(remote.status().message(), local.status().message()))
          << what << ": over gRPC " << remote.status() << ", in process " << local.status();
      EXPECT_TRUE(absl::StrContains(remote.status().message(), server_->address()))
          << remote.status();
    }
    return false;
  }

  ManualClock clock_;
  std::unique_ptr<Scheduler> over_grpc_, in_process_;
  std::unique_ptr<rpc::Server> server_;
  std::unique_ptr<SchedulerService> grpc_client_, in_process_client_;
  int calls_ = 0, errors_ = 0;
};

TEST_F(TransportTest, SameAnswersAndErrors) {
  // Nodes: two good ones (the default watermark 0.9, then n1 at 0.5), and refused ones.
  for (const char* node : {"n1", "n2"}) {
    api::v1::RegisterNodeRequest r;
    r.set_node(node);
    *r.mutable_total() = R(4000, 16 * kGiB);
    r.set_agent_address(std::string(node) + ":7000");
    EXPECT_TRUE(Same(std::string("register ") + node, &SchedulerService::RegisterNode, r));
  }
  api::v1::RegisterNodeRequest r;
  r.set_node("n1");
  *r.mutable_total() = R(4000, 16 * kGiB);
  r.set_watermark(0.5);
  EXPECT_TRUE(Same("lower n1's watermark", &SchedulerService::RegisterNode, r));
  r.clear_node();
  EXPECT_FALSE(Same("register no name", &SchedulerService::RegisterNode, r));
  r.set_node("n3");
  *r.mutable_total() = R(-1, kGiB);
  EXPECT_FALSE(Same("register a negative total", &SchedulerService::RegisterNode, r));

  // Placements.
  for (const char* vm : {"a", "b"}) {
    clock_.Advance(absl::Seconds(1));
    api::v1::PlaceVmRequest p;
    p.set_vm(vm);
    p.set_node("n1");
    p.set_migratable(true);
    p.mutable_bounds()->set_min_cu(1);
    p.mutable_bounds()->set_max_cu(8);
    *p.mutable_initial() = R(1000, 4 * kGiB);
    EXPECT_TRUE(Same(std::string("place ") + vm, &SchedulerService::PlaceVm, p));
  }
  api::v1::PlaceVmRequest p;
  p.set_vm("c");
  p.mutable_bounds()->set_min_cu(3);
  p.mutable_bounds()->set_max_cu(2);
  EXPECT_FALSE(Same("place with bounds 3..2", &SchedulerService::PlaceVm, p));
  p.mutable_bounds()->set_max_cu(4);
  p.set_node("ghost");
  EXPECT_FALSE(Same("place on an unknown node", &SchedulerService::PlaceVm, p));
  p.set_vm("a");
  p.set_node("n2");
  EXPECT_FALSE(Same("place a again elsewhere", &SchedulerService::PlaceVm, p));

  // Requests: a grant, a report, and refusals.
  api::v1::PermitRequest q;
  q.set_node("n1");
  q.set_vm("b");
  q.mutable_compute_unit()->set_milli_cpu(250);
  q.mutable_compute_unit()->set_memory_bytes(kGiB);
  *q.mutable_resources() = R(1250, 5 * kGiB);
  EXPECT_TRUE(Same("grow b", &SchedulerService::Request, q));
  *q.mutable_last_permit() = R(1250, 5 * kGiB);
  EXPECT_TRUE(Same("b unchanged", &SchedulerService::Request, q));
  *q.mutable_resources() = R(2250, 9 * kGiB);
  EXPECT_FALSE(Same("b above its bounds", &SchedulerService::Request, q));
  *q.mutable_resources() = R(300, kGiB);
  EXPECT_FALSE(Same("not whole CUs", &SchedulerService::Request, q));
  q.set_vm("ghost");
  *q.mutable_resources() = R(250, kGiB);
  EXPECT_FALSE(Same("an unknown VM", &SchedulerService::Request, q));
  q.set_vm("b");
  q.set_protocol_version(static_cast<api::v1::ProtocolVersion>(7));
  EXPECT_FALSE(Same("protocol version 7", &SchedulerService::Request, q));

  // RequestAsync: the gRPC client answers through the default (it waits), the in-process one
  // through the handler's.
  q.set_protocol_version(api::v1::PROTOCOL_VERSION_UNSPECIFIED);
  q.set_vm("a");
  q.clear_last_permit();
  *q.mutable_resources() = R(750, 3 * kGiB);
  absl::StatusOr<api::v1::PermitResponse> remote, local;
  grpc_client_->RequestAsync(q, [&](absl::StatusOr<api::v1::PermitResponse> p) { remote = p; });
  in_process_client_->RequestAsync(q,
                                   [&](absl::StatusOr<api::v1::PermitResponse> p) { local = p; });
  ASSERT_TRUE(remote.ok() && local.ok()) << remote.status() << " " << local.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*remote, *local));
  EXPECT_EQ(remote->permit().memory_bytes(), 3 * kGiB);

  // Migrations: n1 (watermark 0.5, 8 CU) holds 3 + 5 CU = 8; a grows back to 4 CU: 9 > 8.
  *q.mutable_resources() = R(1000, 4 * kGiB);
  *q.mutable_last_permit() = R(750, 3 * kGiB);
  EXPECT_TRUE(Same("grow a", &SchedulerService::Request, q));
  api::v1::MigrationOrdersRequest o;
  o.set_node("n1");
  EXPECT_TRUE(Same("orders of n1", &SchedulerService::GetMigrationOrders, o));
  absl::StatusOr<api::v1::MigrationOrdersResponse> orders =
      in_process_client_->GetMigrationOrders(o);
  ASSERT_TRUE(orders.ok());
  ASSERT_EQ(orders->orders_size(), 1);
  o.clear_node();
  EXPECT_FALSE(Same("orders of no node", &SchedulerService::GetMigrationOrders, o));
  EXPECT_TRUE(Same("list VMs while migrating", &SchedulerService::ListVms, api::v1::ListRequest()));
  api::v1::MigrationResult done;
  done.set_order_id(orders->orders(0).id());
  done.set_vm(orders->orders(0).vm());
  done.set_succeeded(true);
  EXPECT_TRUE(Same("migration done", &SchedulerService::ReportMigration, done));
  EXPECT_FALSE(Same("migration done twice", &SchedulerService::ReportMigration, done));

  // Reads and releases.
  api::v1::ListRequest list;
  EXPECT_TRUE(Same("list nodes", &SchedulerService::ListNodes, list));
  list.set_node("n2");
  EXPECT_TRUE(Same("list n2's VMs", &SchedulerService::ListVms, list));
  list.set_protocol_version(static_cast<api::v1::ProtocolVersion>(2));
  EXPECT_FALSE(Same("list with protocol version 2", &SchedulerService::ListNodes, list));
  EXPECT_TRUE(Same("status", &SchedulerService::GetStatus, api::v1::StatusRequest()));
  api::v1::ReleaseVmRequest release;
  release.set_vm("a");
  EXPECT_TRUE(Same("release a", &SchedulerService::ReleaseVm, release));
  EXPECT_FALSE(Same("release a again", &SchedulerService::ReleaseVm, release));
  release.clear_vm();
  EXPECT_FALSE(Same("release no VM", &SchedulerService::ReleaseVm, release));
  EXPECT_TRUE(Same("list VMs at the end", &SchedulerService::ListVms, api::v1::ListRequest()));

  // Node lifecycle and bounds.
  api::v1::UpdateVmBoundsRequest bounds;
  bounds.set_vm("b");
  bounds.mutable_bounds()->set_min_cu(1);
  bounds.mutable_bounds()->set_max_cu(12);
  EXPECT_TRUE(Same("b's new bounds", &SchedulerService::UpdateVmBounds, bounds));
  bounds.set_node("n2");
  EXPECT_FALSE(Same("b's bounds on the wrong node", &SchedulerService::UpdateVmBounds, bounds));
  api::v1::UpdateNodeRequest update;
  update.set_node("n2");
  *update.mutable_total() = R(1000, 4 * kGiB);
  EXPECT_TRUE(Same("n2 over capacity", &SchedulerService::UpdateNode, update));
  update.set_watermark(2);
  EXPECT_FALSE(Same("a watermark of 2", &SchedulerService::UpdateNode, update));
  api::v1::CordonNodeRequest cordon;
  cordon.set_node("n1");
  cordon.set_cordon(true);
  EXPECT_TRUE(Same("cordon n1", &SchedulerService::CordonNode, cordon));
  cordon.set_node("ghost");
  EXPECT_FALSE(Same("cordon a ghost", &SchedulerService::CordonNode, cordon));
  api::v1::DrainNodeRequest drain;
  drain.set_node("n2");
  EXPECT_TRUE(Same("drain n2", &SchedulerService::DrainNode, drain));
  api::v1::RemoveNodeRequest remove;
  remove.set_node("n1");
  EXPECT_FALSE(Same("remove n1 with b on it", &SchedulerService::RemoveNode, remove));
  remove.set_force(true);
  EXPECT_TRUE(Same("remove n1 by force", &SchedulerService::RemoveNode, remove));
  EXPECT_TRUE(Same("list nodes at the end", &SchedulerService::ListNodes, api::v1::ListRequest()));

  EXPECT_GE(errors_, 18) << "refusals compared (out of " << calls_ << " calls)";
}

}  // namespace
}  // namespace autoscale::scheduler
