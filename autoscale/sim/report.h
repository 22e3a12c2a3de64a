// Reports of simulation runs: the fleet-wide summary (as text), a per-VM CSV, and a
// self-contained HTML page with inline SVG plots (no scripts, nothing fetched).
//
//   Results a = ...;                                       // Simulation::TakeResults()
//   Summary s = Summarize(a);
//   std::cout << FormatSummaries({{"default", s}});
//   RETURN_IF_ERROR(WriteTextFile("vms.csv", VmCsv(a)));
//   RETURN_IF_ERROR(WriteTextFile("series.csv", SeriesCsv(a)));   // fleet and nodes over time
//   RETURN_IF_ERROR(WriteTextFile("summary.json", SummaryJson({{"default", s}})));
//   RETURN_IF_ERROR(WriteTextFile("report.html", HtmlReport({{.label = "default", .results =
//   &a}})));
//
// Several runs (for example scaling configs on the same workloads and seed) go side by side: one
// summary column per run, their fleet totals and reaction times in the same plots.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "autoscale/sim/simulation.h"

namespace autoscale::sim {

// The totals of one run. CU-hours count a VM of c compute units of CPU and m of memory as
// max(c, m) CU; "static peak" sizes every VM, for the whole run, at the smallest whole-CU size
// within its bounds that covers its peak demand (a lower bound for static provisioning).
struct Summary {
  size_t vms = 0;
  size_t nodes = 0;
  absl::Duration duration;
  int64_t vm_steps = 0;
  double cu_hours_allocated = 0;
  double cu_hours_demand = 0;
  double cu_hours_static_peak = 0;
  double cu_hours_max_bound = 0;
  absl::Duration vm_time;
  absl::Duration under_provisioned;
  absl::Duration cpu_short;
  absl::Duration memory_short;
  size_t vms_ever_under = 0;
  int64_t memory_shortfalls = 0;
  int64_t memory_pressure_events = 0;
  // Metrics the agents got, and how many gave a goal decided by each part (VmResult).
  int64_t metrics = 0;
  int64_t goal_by_cpu = 0;
  int64_t goal_by_memory = 0;
  int64_t goal_by_memory_total = 0;
  int64_t goal_by_lfc = 0;
  bool lfc_enabled = false;
  int64_t scheduler_requests = 0;
  int64_t growth_requests = 0;
  int64_t full_grants = 0;
  int64_t partial_grants = 0;
  int64_t denials = 0;
  int64_t scheduler_failures = 0;
  int64_t invalid_permits = 0;
  int64_t upscales = 0;
  int64_t downscales = 0;
  int64_t resize_failures = 0;
  int64_t downscale_denials = 0;
  int64_t monitor_failures = 0;
  int64_t migrations = 0;
  int64_t migration_failures = 0;
  absl::Duration migrating;
  int64_t reactions = 0;
  int64_t reactions_abandoned = 0;
  absl::Duration reaction_mean, reaction_p50, reaction_p90, reaction_p99, reaction_max;
  // Reaction times counted in DefaultReactionBins().
  std::vector<int64_t> reaction_bins;
  // Nodes' reservation as a fraction of their total (the larger of CPU and memory), over the
  // node samples: the mean over nodes and samples, and the highest of any node.
  double node_reserved_mean = 0;
  double node_reserved_peak = 0;
};

Summary Summarize(const Results& results);

// The reaction-time histogram's bins: upper bounds, the last one infinite, and their labels.
struct ReactionBins {
  std::vector<absl::Duration> upper;
  std::vector<std::string> labels;
  std::vector<int64_t> Count(const std::vector<absl::Duration>& times) const;
};
const ReactionBins& DefaultReactionBins();

// A table with one column per run, for a terminal.
std::string FormatSummaries(const std::vector<std::pair<std::string, Summary>>& runs);

// The same figures as JSON: {"runs": [{"label": ..., "vms": ..., ...}, ...]}, durations in
// seconds, the reaction-time histogram as {"<label>": count, ...}.
std::string SummaryJson(const std::vector<std::pair<std::string, Summary>>& runs);

// One line per VM with its figures (columns named in the header line).
std::string VmCsv(const Results& results);

// The fleet and every node over time, one line per node sample ("fleet" first, then the nodes):
// what the ledger reserved, what the VMs had (allocated), asked for (demand), got of it (used)
// and lacked (shortage), in milli-CPU and bytes. Samples are SimConfig::node_series_interval
// apart (every step, every minute, ...).
std::string SeriesCsv(const Results& results);

struct ReportRun {
  std::string label{};
  // What was run: shown as a table (for example "scaling config" -> "a.json").
  std::vector<std::pair<std::string, std::string>> settings{};
  const Results* results = nullptr;
};

// The HTML page. The first run's VMs and nodes are plotted in detail; the others are overlaid
// where they compare (fleet totals, recorded VMs' sizes, reaction times).
std::string HtmlReport(const std::vector<ReportRun>& runs);

// Writes `text` to `path` (replacing it); the error names the file.
absl::Status WriteTextFile(const std::string& path, const std::string& text);

}  // namespace autoscale::sim
