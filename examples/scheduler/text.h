// Small helpers shared by the scheduler daemon and schedctl: resources written as
// "<milli-CPU>m/<memory>" ("250m/1GiB"), and the daemon's Prometheus metrics page.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler_handler.h"

namespace autoscale::scheduler {

// "1500m/4GiB", "250m/1073741824", "2000m/512MiB" (memory units B, KiB, MiB, GiB, TiB; none =
// bytes). `what` names the value in errors.
absl::StatusOr<core::Resources> ParseResources(const std::string& text, const char* what);

// The Prometheus text page: per-node gauges named like the reference plugin's
// (autoscaling_plugin_node_{cpu,mem}_resources_current{node,field}; CPU in cores, memory in
// bytes), calls by method and code, and the durable log's counters and recovery report.
std::string RenderMetrics(const ledger::Ledger& ledger, const rpc::SchedulerHandler& handler);

}  // namespace autoscale::scheduler
