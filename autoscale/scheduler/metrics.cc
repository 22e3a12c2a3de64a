#include "examples/scheduler/text.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace autoscale::scheduler {

namespace {

std::string Label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

std::string RenderMetrics(const ledger::Ledger& ledger, const rpc::SchedulerHandler& handler) {
  std::string out;
  const std::vector<ledger::NodeInfo> nodes = ledger.ListNodes();
  struct Field {
    const char* name;
    core::Resources ledger::NodeInfo::*member;
  };
  const Field fields[] = {{"Total", &ledger::NodeInfo::total},
                          {"Reserved", &ledger::NodeInfo::reserved},
                          {"Committed", &ledger::NodeInfo::committed},
                          {"Migrating", &ledger::NodeInfo::migrating},
                          {"Watermark", &ledger::NodeInfo::watermark}};
  Header(out, "autoscaling_plugin_node_cpu_resources_current", "gauge",
         "CPU of each node by field (Reserved with overcommit applied), in cores.");
  for (const ledger::NodeInfo& n : nodes) {
    for (const Field& f : fields) {
      absl::StrAppendFormat(&out,
                            "autoscaling_plugin_node_cpu_resources_current{node=\"%s\",field="
                            "\"%s\"} %g\n",
                            Label(n.name), f.name, (n.*f.member).milli_cpu / 1000.0);
    }
  }
  Header(out, "autoscaling_plugin_node_mem_resources_current", "gauge",
         "Memory of each node by field (Reserved with overcommit applied), in bytes.");
  for (const ledger::NodeInfo& n : nodes) {
    for (const Field& f : fields) {
      absl::StrAppend(&out, "autoscaling_plugin_node_mem_resources_current{node=\"", Label(n.name),
                      "\",field=\"", f.name, "\"} ", (n.*f.member).memory_bytes, "\n");
    }
  }
  Header(out, "autoscaling_plugin_node_vms", "gauge", "VMs on each node.");
  for (const ledger::NodeInfo& n : nodes) {
    absl::StrAppend(&out, "autoscaling_plugin_node_vms{node=\"", Label(n.name), "\"} ", n.vm_count,
                    "\n");
  }
  Header(out, "autoscaling_plugin_node_awaiting_agent", "gauge",
         "1 while a restarted scheduler grants nothing new on the node until its agents report.");
  for (const ledger::NodeInfo& n : nodes) {
    absl::StrAppend(&out, "autoscaling_plugin_node_awaiting_agent{node=\"", Label(n.name), "\"} ",
                    n.awaiting_agent ? 1 : 0, "\n");
  }
  Header(out, "autoscaling_scheduler_requests_total", "counter",
         "Calls answered, by method and status code.");
  for (const rpc::SchedulerHandler::CallCount& c : handler.Counts()) {
    absl::StrAppend(&out, "autoscaling_scheduler_requests_total{method=\"", c.method, "\",code=\"",
                    absl::StatusCodeToString(c.code), "\"} ", c.count, "\n");
  }
  const ledger::RecoveryInfo& rec = ledger.recovery();
  Header(out, "autoscaling_ledger_recovered_records", "gauge",
         "Log records replayed at start (after the snapshot).");
  absl::StrAppend(&out, "autoscaling_ledger_recovered_records ", rec.records_replayed, "\n");
  Header(out, "autoscaling_ledger_log_truncated_bytes", "gauge",
         "Bytes of a torn or corrupt log tail cut at start (0: none).");
  absl::StrAppend(&out, "autoscaling_ledger_log_truncated_bytes{file=\"", Label(rec.truncated_file),
                  "\",reason=\"", Label(rec.truncation_reason), "\"} ", rec.truncated_bytes, "\n");
  Header(out, "autoscaling_ledger_adopted_permits_total", "counter",
         "Agents' last permits above what the log held after a restart, taken back.");
  absl::StrAppend(&out, "autoscaling_ledger_adopted_permits_total ", ledger.adopted_permits(),
                  "\n");
  if (std::optional<ledger::StoreStats> s = ledger.store_stats()) {
    Header(out, "autoscaling_ledger_log_records_total", "counter", "Records appended.");
    absl::StrAppend(&out, "autoscaling_ledger_log_records_total ", s->records_appended, "\n");
    Header(out, "autoscaling_ledger_fsyncs_total", "counter", "Log fsyncs (one per batch).");
    absl::StrAppend(&out, "autoscaling_ledger_fsyncs_total ", s->fsyncs, "\n");
    Header(out, "autoscaling_ledger_records_since_snapshot", "gauge",
           "Records the next snapshot would compact.");
    absl::StrAppend(&out, "autoscaling_ledger_records_since_snapshot ", s->records_since_snapshot,
                    "\n");
    Header(out, "autoscaling_ledger_store_failed", "gauge",
           "1 once the log failed to write (nothing more is granted).");
    absl::StrAppend(&out, "autoscaling_ledger_store_failed ", s->error.ok() ? 0 : 1, "\n");
  }
  return out;
}

}  // namespace autoscale::scheduler
