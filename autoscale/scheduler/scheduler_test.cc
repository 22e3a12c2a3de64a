// The Scheduler as a daemon or the simulator holds it: options checked, the ledger recovered from
// its store, the protocol answered in process, maintenance rounds, the metrics page.
#include "autoscale/scheduler/scheduler.h"

#include <cmath>
#include <memory>
#include <string>

#include "autoscale/base/units.h"
#include "autoscale/ledger/memory_store.h"
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

TEST(SchedulerOptionsTest, BadOptionsAreRefusedByName) {
  struct Case {
    const char* name;
    SchedulerOptions options;
    const char* says;
  };
  SchedulerOptions no_cpu, huge, no_watermark, above_one, nan, no_snapshots;
  no_cpu.default_compute_unit = {0, kGiB};
  huge.default_compute_unit = {250, ledger::kMaxAmount + 1};
  no_watermark.ledger.default_watermark = 0;
  above_one.ledger.default_watermark = 1.5;
  nan.ledger.default_watermark = std::nan("");
  no_snapshots.maintenance.snapshot_every = 0;
  const Case cases[] = {
      {"zero CPU", no_cpu, "compute unit"},
      {"above 1 PiB", huge, "compute unit"},
      {"zero watermark", no_watermark, "watermark"},
      {"watermark 1.5", above_one, "watermark"},
      {"NaN watermark", nan, "watermark"},
      {"no snapshots", no_snapshots, "snapshot_every"},
  };
  for (const Case& c : cases) {
    const absl::Status s = ValidateOptions(c.options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_NE(s.message().find(c.says), std::string::npos) << c.name << ": " << s;
    EXPECT_EQ(Scheduler::Open(c.options, std::make_unique<ledger::MemoryStore>()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << c.name;
  }
  EXPECT_TRUE(ValidateOptions({}).ok());
}

TEST(SchedulerTest, AnswersInProcessBalancesAndRecovers) {
  auto store = std::make_unique<ledger::MemoryStore>();
  ledger::MemoryStore* log = store.get();
  absl::StatusOr<std::unique_ptr<Scheduler>> opened =
      Scheduler::Open({.default_compute_unit = {250, kGiB},
                       .ledger = {.default_watermark = 0.5, .placement = {.randomize = false}}},
                      std::move(store));
  ASSERT_TRUE(opened.ok()) << opened.status();
  Scheduler& scheduler = **opened;
  rpc::scheduler::InProcessClient client(scheduler.service());

  for (const char* node : {"n1", "n2"}) {
    api::v1::RegisterNodeRequest r;
    r.set_node(node);
    *r.mutable_total() = R(4000, 16 * kGiB);  // watermark 0.5 (the default): 8 CU
    r.set_agent_address(std::string(node) + ":7000");
    ASSERT_TRUE(client.RegisterNode(r).ok());
  }
  for (const char* vm : {"a", "b"}) {
    api::v1::PlaceVmRequest place;
    place.set_vm(vm);
    place.set_node("n1");
    place.set_migratable(true);
    place.mutable_bounds()->set_min_cu(1);
    place.mutable_bounds()->set_max_cu(8);
    *place.mutable_initial() = R(1000, 4 * kGiB);
    absl::StatusOr<api::v1::PlaceVmResponse> p = client.PlaceVm(place);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->permit().memory_bytes(), 4 * kGiB);
  }
  // b grows to 5 CU: n1 holds 9 CU, above its watermark of 8.
  api::v1::PermitRequest grow;
  grow.set_node("n1");
  grow.set_vm("b");
  grow.mutable_compute_unit()->set_milli_cpu(250);
  grow.mutable_compute_unit()->set_memory_bytes(kGiB);
  *grow.mutable_resources() = R(1250, 5 * kGiB);
  absl::StatusOr<api::v1::PermitResponse> permit = client.Request(grow);
  ASSERT_TRUE(permit.ok()) << permit.status();
  EXPECT_EQ(permit->permit().memory_bytes(), 5 * kGiB);
  EXPECT_FALSE(permit->has_migration());

  auto migrating = [&client] {
    const absl::StatusOr<api::v1::ListVmsResponse> vms = client.ListVms(api::v1::ListRequest());
    if (!vms.ok()) {
      ADD_FAILURE() << vms.status();
      return -1;
    }
    int n = 0;
    for (const api::v1::VmState& v : vms->vms()) n += v.migrating();
    return n;
  };
  EXPECT_EQ(migrating(), 0);
  scheduler.Tick();
  EXPECT_EQ(migrating(), 1) << "the round ordered a migration off n1";
  api::v1::MigrationOrdersRequest orders_of_n1;
  orders_of_n1.set_node("n1");
  absl::StatusOr<api::v1::MigrationOrdersResponse> orders = client.GetMigrationOrders(orders_of_n1);
  ASSERT_TRUE(orders.ok()) << orders.status();
  ASSERT_EQ(orders->orders_size(), 1);
  EXPECT_EQ(orders->orders(0).target_node(), "n2");
  EXPECT_TRUE(scheduler.ledger().CheckInvariants().ok());

  const std::string page = scheduler.MetricsText();
  for (const char* line : {
           "autoscaling_scheduler_requests_total{method=\"Request\",code=\"OK\"} 1\n",
           "autoscaling_scheduler_requests_total{method=\"PlaceVm\",code=\"OK\"} 2\n",
           "autoscaling_plugin_node_mem_resources_current{node=\"n1\",field=\"Migrating\"} ",
           "autoscaling_plugin_node_vms{node=\"n1\"} 2\n",
       }) {
    EXPECT_NE(page.find(line), std::string::npos) << line << "\nin:\n" << page;
  }
  ASSERT_TRUE(scheduler.Snapshot().ok());

  // A second scheduler from what the first one's store holds answers the same.
  absl::StatusOr<std::unique_ptr<Scheduler>> again =
      Scheduler::Open({}, std::make_unique<ledger::MemoryStore>(log->Contents()));
  ASSERT_TRUE(again.ok()) << again.status();
  rpc::scheduler::InProcessClient client2((*again)->service());
  absl::StatusOr<api::v1::ListVmsResponse> vms = client2.ListVms(api::v1::ListRequest());
  absl::StatusOr<api::v1::ListVmsResponse> before = client.ListVms(api::v1::ListRequest());
  ASSERT_TRUE(vms.ok() && before.ok());
  EXPECT_EQ(vms->SerializeAsString(), before->SerializeAsString());
  EXPECT_EQ(vms->vms(1).permit().memory_bytes(), 5 * kGiB);
}

}  // namespace
}  // namespace autoscale::scheduler
