// The scheduler daemon's Prometheus metrics page.
#pragma once

#include <string>

#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler_handler.h"

namespace autoscale::scheduler {

// The Prometheus text page: per-node gauges named like the reference plugin's
// (autoscaling_plugin_node_{cpu,mem}_resources_current{node,field}; CPU in cores, memory in
// bytes), calls by method and code, and the durable log's counters and recovery report.
std::string RenderMetrics(const ledger::Ledger& ledger, const rpc::SchedulerHandler& handler);

}  // namespace autoscale::scheduler
