#include "examples/scheduler/text.h"

#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(RenderMetricsTest, NamesLikeTheReference) {
  ledger::Ledger ledger({});
  ASSERT_TRUE(ledger.RegisterNode({.name = "n\"1", .total = {4000, 16 * kGiB}}).ok());
  ASSERT_TRUE(ledger
                  .PlaceVm({.name = "vm",
                            .bounds = {1, 8},
                            .compute_unit = {250, kGiB},
                            .initial = {500, 2 * kGiB}})
                  .ok());
  rpc::SchedulerHandler handler(ledger, {250, kGiB});
  api::ListRequest list;
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

}  // namespace
}  // namespace autoscale::scheduler
