// simulate: a fleet of simulated VMs scaled by the project's own core, monitor logic and ledger,
// with a summary on stdout, a per-VM CSV and an HTML report with plots.
//
//   bazel run -c opt //examples/simulate                 # 500 VMs, 20 nodes, 6 h: a first look
//   simulate --config=a.json --compare_config=b.json --compare_config=c.json   # same load
//   simulate --summary_json=s.json --series_csv=series.csv --series_interval=1m   # data out
//   simulate --trace=azure.csv --nodes=50                # recorded load (autoscale/sim/trace.h)
//   simulate --vms=10000 --nodes=400 --duration=24h --step=5s --html= --csv=
//
// Relative output paths are taken from the directory `bazel run` was started in.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/base/init.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/migration_policy.h"
#include "autoscale/sim/report.h"
#include "autoscale/sim/simulation.h"
#include "autoscale/sim/trace.h"
#include "autoscale/sim/workload.h"
#include "glog/logging.h"

ABSL_FLAG(int, vms, 0, "VMs to simulate (0: 500, or every VM of --trace)");
ABSL_FLAG(int, nodes, 20, "nodes of the fleet");
ABSL_FLAG(double, node_cpus, 48, "vCPUs of each node");
ABSL_FLAG(double, node_memory_gib, 192, "memory of each node, GiB");
ABSL_FLAG(double, watermark, 0.9, "node reservation above which VMs are migrated away, (0, 1]");
ABSL_FLAG(std::string, migration_policy, "oldest_first", "oldest_first or fewest_bytes");
ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "simulated time (0: 6h, or the length of --trace)");
ABSL_FLAG(absl::Duration, step, absl::Seconds(1),
          "simulation step: workloads and monitors are sampled at every step");
ABSL_FLAG(absl::Duration, metrics_interval, absl::Seconds(5),
          "how often agents get their VM's metrics (a multiple of --step)");
ABSL_FLAG(std::string, workload, "diurnal:4,bursty:2,ramp:1,spike:1,idle:2",
          "workload mix: kinds (diurnal, bursty, ramp, spike, idle) with weights");
ABSL_FLAG(std::string, trace, "",
          "CSV trace (time_s,vm,cpu_cores,memory_mib) instead of the generated workloads");
ABSL_FLAG(std::string, config, "",
          "scaling config (api.ScalingConfig as JSON; default: the reference's)");
ABSL_FLAG(std::string, compare_config, "",
          "another scaling config, run on the same workloads and seed for comparison (repeat "
          "the flag for more)");
ABSL_FLAG(double, cu_millicpu, 250, "compute unit: milli-CPU");
ABSL_FLAG(double, cu_memory_mib, 1024, "compute unit: memory, MiB");
ABSL_FLAG(int, min_cu, 1, "each VM's lower bound, in compute units");
ABSL_FLAG(int, max_cu, 16, "each VM's upper bound, in compute units");
ABSL_FLAG(absl::Duration, scheduler_latency, absl::Milliseconds(5), "agent-scheduler round trip");
ABSL_FLAG(absl::Duration, monitor_latency, absl::Milliseconds(5), "agent-monitor round trip");
ABSL_FLAG(absl::Duration, hotplug_per_vcpu, absl::Milliseconds(50), "CPU hotplug time per vCPU");
ABSL_FLAG(absl::Duration, hotplug_per_gib, absl::Milliseconds(130), "memory hotplug time per GiB");
ABSL_FLAG(double, migration_gib_per_s, 1, "live migration bandwidth, GiB/s");
ABSL_FLAG(double, scheduler_failure_rate, 0.001, "share of scheduler answers lost");
ABSL_FLAG(double, resize_failure_rate, 0.001, "share of VM resizes that fail");
ABSL_FLAG(double, monitor_failure_rate, 0.001, "share of monitor requests that fail");
ABSL_FLAG(double, migration_failure_rate, 0.01, "share of live migrations that fail");
ABSL_FLAG(uint64_t, seed, 1, "seed of workloads, placement, latencies and failures");
ABSL_FLAG(int, threads, 0, "threads (0: one per core); results do not depend on it");
ABSL_FLAG(bool, step_every_vm, false,
          "ask every VM's agent at every metrics arrival, even when nothing it decides on changed "
          "(slower; the same results)");
ABSL_FLAG(std::string, placement, "ledger",
          "where VMs start: ledger (the scheduler's placement, VMs times nodes) or spread (VM i "
          "on node i mod nodes where it fits: for large fleets)");
ABSL_FLAG(int, plot_vms, 6, "VMs plotted in the report (one per workload kind first)");
ABSL_FLAG(std::string, html, "simulate.html", "HTML report (empty: none)");
ABSL_FLAG(std::string, csv, "simulate_vms.csv",
          "per-VM CSV (empty: none); the compared runs' go beside it (.compare, .compare2, ...)");
ABSL_FLAG(std::string, series_csv, "",
          "fleet and per-node series CSV: reserved, allocated, demand, used, shortage (empty: "
          "none); the compared runs' go beside it like --csv's");
ABSL_FLAG(absl::Duration, series_interval, absl::ZeroDuration(),
          "node series sample interval, a multiple of --step (0: about 720 samples)");
ABSL_FLAG(std::string, summary_json, "", "every run's summary as JSON (empty: none)");
ABSL_FLAG(absl::Duration, lfc_metrics_interval, absl::Seconds(15),
          "how often agents get their VM's LFC working-set windows (enableLFCMetrics)");
ABSL_FLAG(double, lfc_new_page_share, 0.02,
          "share of the pages a VM touches in a minute that it never touched before");
ABSL_FLAG(std::string, lfc_base_gib, "0.25:4",
          "generated VMs' LFC working set: base GiB, drawn log-uniformly from min:max");
ABSL_FLAG(std::string, lfc_per_core_gib, "0.5:2",
          "generated VMs' LFC working set: GiB per core of CPU demand, uniform from min:max");
ABSL_FLAG(std::string, progress, "auto",
          "progress bar on stderr: auto (on a terminal), always, never");
ABSL_FLAG(bool, check_invariants, false,
          "check the ledger and every node's total at every step (slow)");
ABSL_FLAG(bool, verbose, false,
          "log the ledger's and monitors' messages (migrations, upscale requests)");

namespace autoscale::sim {
namespace {

// Every --compare_config given (absl keeps the last one only); filled by main().
std::vector<std::string>& CompareConfigs() {
  static auto* configs = new std::vector<std::string>;
  return *configs;
}

// "--compare_config=X" or "--compare_config X" (also with one dash), in order.
std::vector<std::string> RepeatedFlag(int argc, char** argv, const std::string& name) {
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    for (const std::string& prefix : {"--" + name, "-" + name}) {
      if (arg == prefix && i + 1 < argc) {
        values.push_back(argv[++i]);
      } else if (arg.rfind(prefix + "=", 0) == 0) {
        values.push_back(arg.substr(prefix.size() + 1));
      }
    }
  }
  return values;
}

// "0.25:4" -> {0.25, 4}; the error names the flag.
absl::StatusOr<std::pair<double, double>> Range(const char* flag, const std::string& text) {
  const size_t colon = text.find(':');
  double lo, hi;
  if (colon == std::string::npos || !absl::SimpleAtod(text.substr(0, colon), &lo) ||
      !absl::SimpleAtod(text.substr(colon + 1), &hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be min:max (numbers), got '", text, "'"));
  }
  return std::pair{lo, hi};
}

// `path` for run i: the first run's as given, then .compare, .compare2, ... before the extension.
std::string RunPath(std::string path, size_t i) {
  if (i == 0) return path;
  const std::string tag = i == 1 ? ".compare" : absl::StrCat(".compare", i);
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  const bool has_ext = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return has_ext ? path.substr(0, dot) + tag + path.substr(dot) : path + tag;
}

std::string OutputPath(const std::string& path) {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || dir == nullptr) return path;
  return absl::StrCat(dir, "/", path);
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A flag's value times `unit`, as a whole number in [1, max] (the simulator's limits); the error
// names the flag. Checked before the conversion: a NaN or huge value does not reach the cast.
absl::StatusOr<int64_t> Scaled(const char* flag, double value, double unit, int64_t max) {
  const double scaled = value * unit;
  if (!(scaled >= 1 && scaled <= static_cast<double>(max))) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be in [", 1 / unit, ", ",
                                                   static_cast<double>(max) / unit, "], got ",
                                                   value));
  }
  return static_cast<int64_t>(scaled);
}

absl::StatusOr<core::ScalingConfig> LoadScaling(const std::string& path) {
  api::v1::ScalingConfig proto;
  if (!path.empty()) RETURN_IF_ERROR(ReadProtoFile(OutputPath(path), proto));
  absl::StatusOr<core::ScalingConfig> config = core::ResolveScalingConfig(proto);
  if (!config.ok()) return Annotate(config.status(), path);
  return config;
}

// Workloads for one run: the same for every run of this process.
absl::StatusOr<std::vector<SimVm>> MakeVms(const std::shared_ptr<const Trace>& trace, int count,
                                           uint64_t seed) {
  std::vector<SimVm> vms;
  if (trace != nullptr) {
    for (size_t i = 0; i < trace->vms.size() && static_cast<int>(i) < count; ++i) {
      vms.push_back({trace->vms[i].name, NewTraceWorkload(trace, i)});
    }
    return vms;
  }
  ASSIGN_OR_RETURN(WorkloadMix mix, ParseWorkloadMix(absl::GetFlag(FLAGS_workload)));
  ASSIGN_OR_RETURN(const auto base, Range("lfc_base_gib", absl::GetFlag(FLAGS_lfc_base_gib)));
  ASSIGN_OR_RETURN(const auto per_core,
                   Range("lfc_per_core_gib", absl::GetFlag(FLAGS_lfc_per_core_gib)));
  mix.working_set = {.base_gib_min = base.first,
                     .base_gib_max = base.second,
                     .per_core_gib_min = per_core.first,
                     .per_core_gib_max = per_core.second};
  RETURN_IF_ERROR(ValidateWorkingSetDistribution(mix.working_set));
  std::vector<std::unique_ptr<Workload>> w = MakeWorkloads(mix, static_cast<size_t>(count), seed);
  const int digits = static_cast<int>(std::to_string(count - 1).size());
  for (size_t i = 0; i < w.size(); ++i) {
    vms.push_back({absl::StrFormat("vm-%0*d", digits, i), std::move(w[i])});
  }
  return vms;
}

class ProgressBar {
 public:
  ProgressBar(std::string label, bool on)
      : label_(std::move(label)), on_(on), start_(absl::Now()) {}
  void operator()(double done) const {
    if (!on_) return;
    const int width = 40;
    const int filled = static_cast<int>(done * width);
    std::fprintf(stderr, "\r%s [%s%s] %3.0f%%  %.1fs", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 100 * done, absl::ToDoubleSeconds(absl::Now() - start_));
    if (done >= 1) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  std::string label_;
  bool on_;
  absl::Time start_;
};

struct Run {
  std::string label{};
  std::string config_path{};
  Results results{};
  absl::Duration wall{};
};

int Main() {
  const std::string progress_mode = absl::GetFlag(FLAGS_progress);
  if (progress_mode != "auto" && progress_mode != "always" && progress_mode != "never") {
    std::cerr << "simulate: --progress must be auto, always or never\n";
    return 2;
  }
  const bool progress = progress_mode == "always" || (progress_mode == "auto" && isatty(2));
  auto fail = [](const absl::Status& s) {
    std::cerr << "simulate: " << s.message() << "\n";
    return 2;
  };

  std::shared_ptr<const Trace> trace;
  if (!absl::GetFlag(FLAGS_trace).empty()) {
    absl::StatusOr<Trace> t = ReadTraceCsv(OutputPath(absl::GetFlag(FLAGS_trace)));
    if (!t.ok()) return fail(t.status());
    trace = std::make_shared<const Trace>(*std::move(t));
  }

  SimConfig config;
  config.step = absl::GetFlag(FLAGS_step);
  config.metrics_interval = absl::GetFlag(FLAGS_metrics_interval);
  config.duration = absl::GetFlag(FLAGS_duration);
  if (config.duration == absl::ZeroDuration()) {
    config.duration = trace != nullptr && config.step > absl::ZeroDuration()
                          ? absl::Ceil(trace->end, config.step) + config.step
                          : absl::Hours(6);
  }
  config.seed = absl::GetFlag(FLAGS_seed);
  config.threads = absl::GetFlag(FLAGS_threads);
  config.nodes = absl::GetFlag(FLAGS_nodes);
  absl::StatusOr<int64_t> node_cpu =
      Scaled("node_cpus", absl::GetFlag(FLAGS_node_cpus), 1000, kMaxMilliCpu);
  absl::StatusOr<int64_t> node_memory =
      Scaled("node_memory_gib", absl::GetFlag(FLAGS_node_memory_gib), kGiB, kMaxMemoryBytes);
  absl::StatusOr<int64_t> cu_cpu =
      Scaled("cu_millicpu", absl::GetFlag(FLAGS_cu_millicpu), 1, kMaxMilliCpu);
  absl::StatusOr<int64_t> cu_memory =
      Scaled("cu_memory_mib", absl::GetFlag(FLAGS_cu_memory_mib), kMiB, kMaxMemoryBytes);
  absl::StatusOr<int64_t> migration_bandwidth = Scaled(
      "migration_gib_per_s", absl::GetFlag(FLAGS_migration_gib_per_s), kGiB, kMaxMemoryBytes);
  for (const auto* v : {&node_cpu, &node_memory, &cu_cpu, &cu_memory, &migration_bandwidth}) {
    if (!v->ok()) return fail(v->status());
  }
  config.node_capacity = {*node_cpu, *node_memory};
  config.watermark = absl::GetFlag(FLAGS_watermark);
  config.migration_policy = ledger::NewMigrationPolicy(absl::GetFlag(FLAGS_migration_policy));
  if (config.migration_policy == nullptr) {
    return fail(absl::InvalidArgumentError(absl::StrCat("--migration_policy: unknown policy '",
                                                        absl::GetFlag(FLAGS_migration_policy),
                                                        "' (known: oldest_first, fewest_bytes)")));
  }
  config.compute_unit = {*cu_cpu, *cu_memory};
  if (absl::GetFlag(FLAGS_min_cu) < 1 ||
      absl::GetFlag(FLAGS_max_cu) < absl::GetFlag(FLAGS_min_cu)) {
    return fail(absl::InvalidArgumentError("--min_cu and --max_cu: need 1 <= min <= max"));
  }
  config.bounds = {static_cast<uint32_t>(absl::GetFlag(FLAGS_min_cu)),
                   static_cast<uint32_t>(absl::GetFlag(FLAGS_max_cu))};
  config.latencies.scheduler = absl::GetFlag(FLAGS_scheduler_latency);
  config.latencies.monitor = absl::GetFlag(FLAGS_monitor_latency);
  config.latencies.per_vcpu = absl::GetFlag(FLAGS_hotplug_per_vcpu);
  config.latencies.per_gib = absl::GetFlag(FLAGS_hotplug_per_gib);
  config.latencies.migration_bytes_per_second = *migration_bandwidth;
  config.failures = {.scheduler = absl::GetFlag(FLAGS_scheduler_failure_rate),
                     .vm_resize = absl::GetFlag(FLAGS_resize_failure_rate),
                     .monitor = absl::GetFlag(FLAGS_monitor_failure_rate),
                     .migration = absl::GetFlag(FLAGS_migration_failure_rate)};
  config.check_invariants = absl::GetFlag(FLAGS_check_invariants);
  config.step_every_vm = absl::GetFlag(FLAGS_step_every_vm);
  config.node_series_interval = absl::GetFlag(FLAGS_series_interval);
  config.lfc_metrics_interval = absl::GetFlag(FLAGS_lfc_metrics_interval);
  config.lfc_new_page_share = absl::GetFlag(FLAGS_lfc_new_page_share);
  if (absl::GetFlag(FLAGS_placement) == "ledger") {
    config.placement = InitialPlacement::kLedger;
  } else if (absl::GetFlag(FLAGS_placement) == "spread") {
    config.placement = InitialPlacement::kSpread;
  } else {
    return fail(absl::InvalidArgumentError(absl::StrCat("--placement: unknown placement '",
                                                        absl::GetFlag(FLAGS_placement),
                                                        "' (known: ledger, spread)")));
  }

  int count = absl::GetFlag(FLAGS_vms);
  if (count < 0) return fail(absl::InvalidArgumentError("--vms must be >= 0"));
  if (count == 0) count = trace != nullptr ? static_cast<int>(trace->vms.size()) : 500;

  std::vector<Run> runs;
  runs.push_back(
      {absl::GetFlag(FLAGS_config).empty() ? "default" : Basename(absl::GetFlag(FLAGS_config)),
       absl::GetFlag(FLAGS_config)});
  for (const std::string& path : CompareConfigs()) {
    if (path.empty()) continue;
    Run run{Basename(path), path};
    // Labels name the runs in the report: each one once.
    for (int k = 2;
         std::any_of(runs.begin(), runs.end(), [&](const Run& r) { return r.label == run.label; });
         ++k) {
      run.label = absl::StrCat(Basename(path), " (", k, ")");
    }
    runs.push_back(std::move(run));
  }

  for (Run& run : runs) {
    absl::StatusOr<core::ScalingConfig> scaling = LoadScaling(run.config_path);
    if (!scaling.ok()) return fail(scaling.status());
    config.scaling = *scaling;
    absl::StatusOr<std::vector<SimVm>> vms = MakeVms(trace, count, config.seed);
    if (!vms.ok()) return fail(vms.status());
    // Plot one VM of each workload kind first, then the next ones.
    config.series_vms.clear();
    std::vector<std::string> kinds;
    for (uint32_t i = 0; i < vms->size(); ++i) {
      const std::string kind = (*vms)[i].workload->kind();
      if (std::find(kinds.begin(), kinds.end(), kind) != kinds.end()) continue;
      kinds.push_back(kind);
      config.series_vms.push_back(i);
    }
    const size_t plot = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_plot_vms)));
    for (uint32_t i = 0; i < vms->size() && config.series_vms.size() < plot; ++i) {
      if (std::find(config.series_vms.begin(), config.series_vms.end(), i) ==
          config.series_vms.end()) {
        config.series_vms.push_back(i);
      }
    }
    config.series_vms.resize(std::min(config.series_vms.size(), plot));
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Simulation>> sim = Simulation::Create(config, *std::move(vms));
    if (!sim.ok()) return fail(sim.status());
    ProgressBar bar(run.label, progress);
    // No progress callback when there is no bar: each callback ends the nodes' run of steps.
    absl::Status s =
        (*sim)->Run(progress ? std::function<void(double)>([&](double done) { bar(done); })
                             : std::function<void(double)>());
    if (!s.ok()) return fail(s);
    run.results = (*sim)->TakeResults();
    run.wall = absl::Now() - start;
  }

  std::vector<std::pair<std::string, Summary>> summaries;
  for (const Run& run : runs) summaries.emplace_back(run.label, Summarize(run.results));
  std::cout << FormatSummaries(summaries);
  for (const Run& run : runs) {
    std::cout << absl::StrFormat(
        "%s: %.1f s of wall time, %.2f M VM-steps/s, agents asked %.1f%% of VM-steps\n", run.label,
        absl::ToDoubleSeconds(run.wall),
        static_cast<double>(run.results.vm_steps) / absl::ToDoubleSeconds(run.wall) / 1e6,
        100.0 * static_cast<double>(run.results.agent_asks) /
            static_cast<double>(std::max<int64_t>(1, run.results.vm_steps)));
  }

  // One file per run of each kind asked for.
  const struct {
    std::string flag;
    const char* what;
    std::string (*text)(const Results&);
  } per_run[] = {{absl::GetFlag(FLAGS_csv), "per-VM CSV", VmCsv},
                 {absl::GetFlag(FLAGS_series_csv), "fleet and node series CSV", SeriesCsv}};
  for (const auto& out : per_run) {
    if (out.flag.empty()) continue;
    for (size_t i = 0; i < runs.size(); ++i) {
      const std::string path = RunPath(OutputPath(out.flag), i);
      if (absl::Status s = WriteTextFile(path, out.text(runs[i].results)); !s.ok()) return fail(s);
      std::cout << out.what << " (" << runs[i].label << "): " << path << "\n";
    }
  }
  if (const std::string json = absl::GetFlag(FLAGS_summary_json); !json.empty()) {
    const std::string path = OutputPath(json);
    if (absl::Status s = WriteTextFile(path, SummaryJson(summaries)); !s.ok()) return fail(s);
    std::cout << "summary JSON: " << path << "\n";
  }
  const std::string html = absl::GetFlag(FLAGS_html);
  if (!html.empty()) {
    std::vector<ReportRun> report;
    const std::string workload = trace != nullptr
                                     ? absl::StrCat("trace ", absl::GetFlag(FLAGS_trace))
                                     : absl::GetFlag(FLAGS_workload);
    for (const Run& run : runs) {
      report.push_back(
          {.label = run.label,
           .settings =
               {{"scaling config",
                 run.config_path.empty() ? "the reference's defaults" : run.config_path},
                {"VMs, nodes", absl::StrCat(run.results.vms.size(), ", ", config.nodes)},
                {"node", config.node_capacity.ToString()},
                {"compute unit, VM bounds",
                 absl::StrCat(config.compute_unit.ToString(), ", ", config.bounds.min_cu, "..",
                              config.bounds.max_cu, " CU")},
                {"workload", workload},
                {"duration, step, metrics every",
                 absl::StrCat(absl::FormatDuration(config.duration), ", ",
                              absl::FormatDuration(config.step), ", ",
                              absl::FormatDuration(config.metrics_interval))},
                {"LFC goal (enableLFCMetrics), windows every, new pages per minute",
                 run.results.scaling.enable_lfc_metrics
                     ? absl::StrCat("on, ", absl::FormatDuration(config.lfc_metrics_interval), ", ",
                                    config.lfc_new_page_share)
                     : "off"},
                {"watermark, migration policy",
                 absl::StrCat(config.watermark, ", ", absl::GetFlag(FLAGS_migration_policy))},
                {"failure rates: scheduler, resize, monitor, migration",
                 absl::StrCat(config.failures.scheduler, ", ", config.failures.vm_resize, ", ",
                              config.failures.monitor, ", ", config.failures.migration)},
                {"seed", absl::StrCat(config.seed)}},
           .results = &run.results});
    }
    const std::string path = OutputPath(html);
    if (absl::Status s = WriteTextFile(path, HtmlReport(report)); !s.ok()) return fail(s);
    std::cout << "HTML report: " << path << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace autoscale::sim

int main(int argc, char** argv) {
  autoscale::sim::CompareConfigs() = autoscale::sim::RepeatedFlag(argc, argv, "compare_config");
  std::vector<char*> args = autoscale::InitProgram(
      argc, argv,
      "simulate: a fleet of simulated VMs scaled by the project's core, monitor and ledger.\n"
      "  simulate [--vms=500 --nodes=20 --duration=6h] [--config=a.json "
      "--compare_config=b.json] [--trace=FILE.csv]");
  if (args.size() > 1) {
    std::cerr << "simulate: unexpected argument '" << args[1] << "' (see --help)\n";
    return 2;
  }
  if (!absl::GetFlag(FLAGS_verbose)) FLAGS_minloglevel = google::GLOG_ERROR;
  return autoscale::sim::Main();
}
