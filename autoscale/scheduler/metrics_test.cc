#include "autoscale/scheduler/metrics.h"

#include <memory>
#include <string>

#include "autoscale/base/units.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

TEST(RenderMetricsTest, NamesLikeTheReference) {
  ledger::Ledger ledger({});
  ASSERT_TRUE(ledger.RegisterNode({.name = "n\"1", .total = {4000, 16 * kGiB}}).ok());
  ASSERT_TRUE(ledger
                  .PlaceVm({.name = "vm",
                            .bounds = {1, 8},
                            .compute_unit = {250, kGiB},
                            .initial = {500, 2 * kGiB}})
                  .ok());
  RequestHandler handler(ledger, {250, kGiB});
  api::v1::ListRequest list;
  (void)handler.ListNodes(list);  // refused: no protocol version
  const std::string page = RenderMetrics(ledger, handler);
  for (const char* line : {
           "autoscaling_plugin_node_cpu_resources_current{node=\"n\\\"1\",field=\"Total\"} 4\n",
           "autoscaling_plugin_node_cpu_resources_current{node=\"n\\\"1\",field=\"Reserved\"} "
           "0.5\n",
           "autoscaling_plugin_node_mem_resources_current{node=\"n\\\"1\",field=\"Reserved\"} "
           "2147483648\n",
           "autoscaling_plugin_node_mem_resources_current{node=\"n\\\"1\",field=\"Watermark\"} "
           "15461882265\n",
           "autoscaling_plugin_node_vms{node=\"n\\\"1\"} 1\n",
           "autoscaling_scheduler_requests_total{method=\"ListNodes\",code=\"FAILED_PRECONDITION\"}"
           " "
           "1\n",
           "autoscaling_ledger_log_truncated_bytes{file=\"\",reason=\"\"} 0\n",
       }) {
    EXPECT_NE(page.find(line), std::string::npos) << line << "\nin:\n" << page;
  }
}

// A durable ledger adds the log's series; every family has its type line.
TEST(RenderMetricsTest, StoreSeriesAndTypes) {
  std::unique_ptr<ledger::Ledger> ledger =
      *ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>());
  ASSERT_TRUE(ledger->RegisterNode({.name = "n1", .total = {4000, 16 * kGiB}}).ok());
  RequestHandler handler(*ledger, {250, kGiB});
  api::v1::PlaceVmRequest place = rpc::scheduler::WithVersion(api::v1::PlaceVmRequest());
  place.set_vm("vm");
  place.mutable_bounds()->set_min_cu(2);
  place.mutable_bounds()->set_max_cu(4);
  ASSERT_TRUE(handler.PlaceVm(place).ok());
  const std::string page = RenderMetrics(*ledger, handler);
  for (const char* line : {
           "# TYPE autoscaling_plugin_node_cpu_resources_current gauge\n",
           "autoscaling_plugin_node_cpu_resources_current{node=\"n1\",field=\"Committed\"} 0.5\n",
           "autoscaling_plugin_node_mem_resources_current{node=\"n1\",field=\"Migrating\"} 0\n",
           "autoscaling_plugin_node_awaiting_agent{node=\"n1\"} 0\n",
           "# TYPE autoscaling_scheduler_requests_total counter\n",
           "autoscaling_scheduler_requests_total{method=\"PlaceVm\",code=\"OK\"} 1\n",
           "autoscaling_ledger_recovered_records 0\n",
           "autoscaling_ledger_adopted_permits_total 0\n",
           "autoscaling_ledger_log_records_total 2\n",
           "autoscaling_ledger_records_since_snapshot 2\n",
           "autoscaling_ledger_fsyncs_total 0\n",
           "# TYPE autoscaling_ledger_store_failed gauge\n",
           "autoscaling_ledger_store_failed 0\n",
       }) {
    EXPECT_NE(page.find(line), std::string::npos) << line << "\nin:\n" << page;
  }
}

}  // namespace
}  // namespace autoscale::scheduler
