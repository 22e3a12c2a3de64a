#include "autoscale/scheduler/metrics.h"

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "autoscale/base/prometheus.h"

namespace autoscale::scheduler {

std::string RenderMetrics(const ledger::Ledger& ledger, const RequestHandler& handler,
                          const Maintenance* maintenance) {
  // A registry filled afresh for each page: the ledger and the handler hold the figures, and a
  // node or a call count that is gone leaves no stale series.
  Metrics m;
  struct Field {
    const char* name;
    core::Resources ledger::NodeInfo::*member;
  };
  const Field fields[] = {{"Total", &ledger::NodeInfo::total},
                          {"Reserved", &ledger::NodeInfo::reserved},
                          {"Committed", &ledger::NodeInfo::committed},
                          {"Migrating", &ledger::NodeInfo::migrating},
                          {"Watermark", &ledger::NodeInfo::watermark}};
  constexpr char kCpu[] = "autoscaling_plugin_node_cpu_resources_current";
  constexpr char kMem[] = "autoscaling_plugin_node_mem_resources_current";
  constexpr char kVms[] = "autoscaling_plugin_node_vms";
  constexpr char kAwaiting[] = "autoscaling_plugin_node_awaiting_agent";
  m.Describe(kCpu, Metrics::kGauge,
             "CPU of each node by field (Reserved with overcommit applied), in cores.");
  m.Describe(kMem, Metrics::kGauge,
             "Memory of each node by field (Reserved with overcommit applied), in bytes.");
  m.Describe(kVms, Metrics::kGauge, "VMs on each node.");
  m.Describe(kAwaiting, Metrics::kGauge,
             "1 while a restarted scheduler grants nothing new on the node until its agents "
             "report.");
  constexpr char kCordoned[] = "autoscaling_scheduler_node_cordoned";
  constexpr char kDraining[] = "autoscaling_scheduler_node_draining";
  constexpr char kOver[] = "autoscaling_scheduler_node_over_capacity";
  m.Describe(kCordoned, Metrics::kGauge, "1 while the node takes no placements or migrations.");
  m.Describe(kDraining, Metrics::kGauge, "1 while the node's VMs are ordered away.");
  m.Describe(kOver, Metrics::kGauge,
             "1 while the node reserves more than its (lowered) total; it grants nothing.");
  for (const ledger::NodeInfo& n : ledger.ListNodes()) {
    for (const Field& f : fields) {
      const Metrics::Labels labels = {{"node", n.name}, {"field", f.name}};
      m.Set(kCpu, labels, (n.*f.member).milli_cpu / 1000.0);
      m.Set(kMem, labels, static_cast<double>((n.*f.member).memory_bytes));
    }
    m.Set(kVms, {{"node", n.name}}, static_cast<double>(n.vm_count));
    m.Set(kAwaiting, {{"node", n.name}}, n.awaiting_agent ? 1 : 0);
    m.Set(kCordoned, {{"node", n.name}}, n.cordoned ? 1 : 0);
    m.Set(kDraining, {{"node", n.name}}, n.draining ? 1 : 0);
    m.Set(kOver, {{"node", n.name}}, n.over_capacity ? 1 : 0);
  }

  constexpr char kCalls[] = "autoscaling_scheduler_requests_total";
  m.Describe(kCalls, Metrics::kCounter, "Calls answered, by method and status code.");
  for (const RequestHandler::CallCount& c : handler.Counts()) {
    m.Set(kCalls, {{"method", c.method}, {"code", absl::StatusCodeToString(c.code)}},
          static_cast<double>(c.count));
  }

  const ledger::RecoveryInfo& rec = ledger.recovery();
  m.Describe("autoscaling_ledger_recovered_records", Metrics::kGauge,
             "Log records replayed at start (after the snapshot).");
  m.Set("autoscaling_ledger_recovered_records", {}, static_cast<double>(rec.records_replayed));
  m.Describe("autoscaling_ledger_log_truncated_bytes", Metrics::kGauge,
             "Bytes of a torn or corrupt log tail cut at start (0: none).");
  m.Set("autoscaling_ledger_log_truncated_bytes",
        {{"file", rec.truncated_file}, {"reason", rec.truncation_reason}},
        static_cast<double>(rec.truncated_bytes));
  m.Describe("autoscaling_ledger_adopted_permits_total", Metrics::kCounter,
             "Agents' last permits above what the log held after a restart, taken back.");
  m.Set("autoscaling_ledger_adopted_permits_total", {},
        static_cast<double>(ledger.adopted_permits()));
  m.Describe("autoscaling_ledger_clipped_adoptions_total", Metrics::kCounter,
             "Adopted permits the node had room for only in part.");
  m.Set("autoscaling_ledger_clipped_adoptions_total", {},
        static_cast<double>(ledger.clipped_adoptions()));
  m.Describe("autoscaling_ledger_expired_migrations_total", Metrics::kCounter,
             "Migration orders ended as failed because they were not reported in time.");
  m.Set("autoscaling_ledger_expired_migrations_total", {},
        static_cast<double>(ledger.expired_migrations()));
  if (maintenance != nullptr) {
    m.Describe("autoscaling_ledger_failed_snapshots_total", Metrics::kCounter,
               "Snapshots that failed (each tried again after a back-off).");
    m.Set("autoscaling_ledger_failed_snapshots_total", {},
          static_cast<double>(maintenance->failed_snapshots()));
  }
  if (std::optional<ledger::StoreStats> s = ledger.store_stats()) {
    m.Describe("autoscaling_ledger_log_records_total", Metrics::kCounter, "Records appended.");
    m.Set("autoscaling_ledger_log_records_total", {}, static_cast<double>(s->records_appended));
    m.Describe("autoscaling_ledger_fsyncs_total", Metrics::kCounter, "Log fsyncs (one per batch).");
    m.Set("autoscaling_ledger_fsyncs_total", {}, static_cast<double>(s->fsyncs));
    m.Describe("autoscaling_ledger_records_since_snapshot", Metrics::kGauge,
               "Records the next snapshot would compact.");
    m.Set("autoscaling_ledger_records_since_snapshot", {},
          static_cast<double>(s->records_since_snapshot));
    m.Describe("autoscaling_ledger_store_failed", Metrics::kGauge,
               "1 while the log cannot be written (nothing changes; it is retried).");
    m.Set("autoscaling_ledger_store_failed", {}, s->error.ok() ? 0 : 1);
    m.Describe("autoscaling_ledger_store_low_space", Metrics::kGauge,
               "1 while the log's disk is full and its reserve in use (growth is refused).");
    m.Set("autoscaling_ledger_store_low_space", {}, s->low_space ? 1 : 0);
    m.Describe("autoscaling_ledger_write_errors_total", Metrics::kCounter,
               "Write errors of the log (each retried).");
    m.Set("autoscaling_ledger_write_errors_total", {}, static_cast<double>(s->write_errors));
  }
  return m.Render();
}

}  // namespace autoscale::scheduler
