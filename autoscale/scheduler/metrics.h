// The scheduler's Prometheus metrics page.
//
//   http.Get("/metrics", [&](auto&, auto& res) {
//     res.set_content(RenderMetrics(ledger, handler), "text/plain; version=0.0.4");
//   });
#pragma once

#include <string>

#include "autoscale/ledger/ledger.h"
#include "autoscale/scheduler/maintenance.h"
#include "autoscale/scheduler/request_handler.h"

namespace autoscale::scheduler {

// The page, as of now: per-node gauges named like the reference plugin's
// (autoscaling_plugin_node_{cpu,mem}_resources_current{node,field}; CPU in cores, memory in
// bytes; the field Reserved is the node's, with overcommit), VMs and the recovery wait per node,
// calls by method and status code, and the durable log's counters and recovery report.
// `maintenance` (optional) adds its counters.
std::string RenderMetrics(const ledger::Ledger& ledger, const RequestHandler& handler,
                          const Maintenance* maintenance = nullptr);

}  // namespace autoscale::scheduler
