// monitor: the in-VM monitor daemon. Watches a memory cgroup, asks the agent for more memory the
// moment usage passes its threshold, answers downscale checks, resizes the LFC, and streams
// metrics to the agent over gRPC (autoscale/api/monitor.proto).
//
//   monitor --listen=0.0.0.0:10301 --cgroup=/sys/fs/cgroup/memory/postgres
//           --tls_cert=vm.pem --tls_key=vm.key --tls_ca=ca.pem --trust_domain=prod
//           (or --insecure)
//           --lfc_resizer=postgres --postgres_conninfo='host=/run/postgresql dbname=postgres'
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/http_server.h"
#include "autoscale/base/init.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/sd_notify.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "autoscale/rpc/monitor/grpc_server.h"
#include "autoscale/rpc/tls_flags.h"
#include "glog/logging.h"
#include "lfc/postgres_resizer.h"
#include "lfc/resizer.h"
#include "monitor/agent_link.h"
#include "monitor/cgroup/layout.h"
#include "monitor/cgroup_monitor.h"
#include "monitor/metrics.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:10301",
          "Where the agent connects: host:port, or unix:/path.");
ABSL_FLAG(std::string, cgroup, "",
          "The memory cgroup to watch: a directory under the cgroup mount. Empty: this process's "
          "own memory cgroup (v1, or v2 if it has the memory controller).");
ABSL_FLAG(
    std::string, watch, "auto",
    "How the kernel reports threshold crossings: auto, v1 (usage threshold eventfd), v2 "
    "(memory.events of the operator's memory.high; never written), psi (a pressure trigger) or "
    "none (sampling only).");
ABSL_FLAG(std::string, memory_high, "max",
          "On a cgroup v2 group: the memory.high the operator wants on it, set at start if the "
          "group has another (monitor 0.1.0 set it to its threshold and a crashed one left it): "
          "max (no throttle, as Neon), a size in bytes, or keep (leave whatever is there). The "
          "monitor never changes it otherwise.");
ABSL_FLAG(std::string, psi_file, "",
          "For --watch=psi: the memory.pressure file (default: the "
          "cgroup's; /proc/pressure/memory for the whole VM).");
ABSL_FLAG(int64_t, memory_bytes, 0,
          "The VM's memory at start (default: MemTotal of /proc/meminfo). What MemTotal lacks of "
          "it is taken as the kernel's own and left out of the threshold.");
ABSL_FLAG(std::string, config, "",
          "A MonitorConfig (autoscale/api/config.proto) as .json or .textproto: threshold "
          "fraction, reserve, headroom, sampling. Flags below override it.");
ABSL_FLAG(double, threshold_fraction, 0,
          "Fraction of usable memory that triggers an upscale "
          "request (default 0.85).");
ABSL_FLAG(absl::Duration, sample_interval, absl::ZeroDuration(),
          "memory.stat sampling interval while the kernel watcher guards the threshold "
          "(default 1s).");
ABSL_FLAG(absl::Duration, metrics_interval, absl::Seconds(1),
          "How often metrics are sent to the connected agent.");
ABSL_FLAG(std::string, lfc_resizer, "none",
          "How the Local File Cache is resized: none; postgres (ALTER SYSTEM over libpq); or "
          "file:PATH (the size in bytes is written to PATH, with a log line: for embedders and "
          "tests).");
ABSL_FLAG(std::string, postgres_conninfo, "",
          "For --lfc_resizer=postgres: the libpq connection string.");
ABSL_FLAG(std::string, postgres_setting, "neon.file_cache_size_limit",
          "For --lfc_resizer=postgres: the setting that holds the cache size in MB.");
ABSL_FLAG(int64_t, lfc_max_bytes, 0, "Upper bound on the LFC size (0: none).");
ABSL_FLAG(std::string, lfc_windows_file, "",
          "A file the operator's LFC estimator rewrites: up to 60 working-set sizes in pages "
          "(window i: the last i+1 minutes), sent to the agent with each metrics push for the "
          "core's LFC goal. Empty: no windows (the LFC goal stays inert).");
ABSL_FLAG(std::string, lfc_windows_function, "",
          "Instead of --lfc_windows_file: the working-set windows from Postgres "
          "(--postgres_conninfo), this function of a duration in seconds called for 60, 120, ..., "
          "3600, as Neon's neon.approximate_working_set_size_seconds. Empty: not asked.");
ABSL_FLAG(std::string, agent_token_file, autoscale::rpc::monitor::kGuestAgentTokenPath,
          "The VM's agent token (handed to the guest through QEMU's fw_cfg): only an agent that "
          "presents it is admitted. The default path is fw_cfg's in sysfs (module qemu_fw_cfg); "
          "when it is absent, or the flag is empty, the link is not bound to the VM's agent (a "
          "warning says so). Another file that cannot be read is an error.");
ABSL_FLAG(std::string, http_host, "127.0.0.1",
          "Address of the HTTP server (/metrics, /healthz, /readyz); in a guest, 0.0.0.0 so a "
          "host forward reaches it.");
ABSL_FLAG(int, http_port, 10302, "Port of the HTTP server; 0 picks a free one, -1 turns it off.");

namespace autoscale {
namespace {

// SIGTERM and SIGINT stop the daemon. They are blocked in main before any thread starts (every
// thread inherits the mask) and taken by sigwait once the daemon serves: no handler runs on some
// thread in the middle of gRPC's or the monitor's locks, and a signal that comes during the start
// is not lost but handled once the start is done.
sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

// The monitor's page: what it watches and what it asked for.
std::string MetricsText(const monitor::Monitor& m, const monitor::AgentLink& link) {
  Metrics page;
  page.Describe("autoscaling_monitor_memory_bytes", Metrics::kGauge,
                "The VM's memory as the monitor knows it, in bytes.");
  page.Set("autoscaling_monitor_memory_bytes", {}, static_cast<double>(m.memory_bytes()));
  page.Describe("autoscaling_monitor_threshold_bytes", Metrics::kGauge,
                "Usage above which the monitor asks the agent for more memory, in bytes.");
  page.Set("autoscaling_monitor_threshold_bytes", {}, static_cast<double>(m.threshold_bytes()));
  if (std::optional<int64_t> usage = m.average_usage_bytes()) {
    page.Describe("autoscaling_monitor_usage_bytes", Metrics::kGauge,
                  "The watched cgroup's memory usage (recent average), in bytes.");
    page.Set("autoscaling_monitor_usage_bytes", {}, static_cast<double>(*usage));
  }
  page.Describe("autoscaling_monitor_upscale_requests_total", Metrics::kCounter,
                "Upscale requests sent to the agent.");
  page.Set("autoscaling_monitor_upscale_requests_total", {},
           static_cast<double>(m.upscale_requests()));
  page.Describe("autoscaling_monitor_agent_connected", Metrics::kGauge,
                "1 while an agent is connected.");
  page.Set("autoscaling_monitor_agent_connected", {}, link.connected() ? 1 : 0);
  return page.Render();
}

absl::StatusOr<std::string> CgroupDir() {
  if (!absl::GetFlag(FLAGS_cgroup).empty()) return absl::GetFlag(FLAGS_cgroup);
  ASSIGN_OR_RETURN(monitor::cgroup::Layout layout, monitor::cgroup::DetectLayout());
  switch (layout.memory_version()) {
    case monitor::cgroup::Version::kV1: {
      ASSIGN_OR_RETURN(std::string own, monitor::cgroup::OwnCgroup("memory"));
      return layout.v1_memory + (own == "/" ? "" : own);
    }
    case monitor::cgroup::Version::kV2: {
      ASSIGN_OR_RETURN(std::string own, monitor::cgroup::OwnCgroup(""));
      return layout.v2 + (own == "/" ? "" : own);
    }
    case monitor::cgroup::Version::kNone:
      break;
  }
  return absl::FailedPreconditionError(
      "no memory cgroup controller is mounted (v1 or v2); mount one or pass --cgroup");
}

absl::StatusOr<std::unique_ptr<lfc::LfcResizer>> MakeResizer() {
  const std::string kind = absl::GetFlag(FLAGS_lfc_resizer);
  if (kind == "none") return std::make_unique<lfc::NoopResizer>();
  if (absl::StartsWith(kind, "file:")) {
    const std::string path = kind.substr(5);
    return std::unique_ptr<lfc::LfcResizer>(new lfc::CallbackResizer([path](uint64_t bytes) {
      std::ofstream out(path + ".tmp");
      out << bytes << "\n";
      out.close();
      if (!out || std::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
        return absl::UnavailableError(absl::StrCat("lfc file resizer: cannot write ", path));
      }
      LOG(INFO) << "monitor: LFC size set to " << (bytes >> 20) << " MiB";
      return absl::OkStatus();
    }));
  }
  if (kind == "postgres") {
    ASSIGN_OR_RETURN(auto resizer, lfc::PostgresResizer::Create(
                                       {.conninfo = absl::GetFlag(FLAGS_postgres_conninfo),
                                        .setting = absl::GetFlag(FLAGS_postgres_setting)}));
    return std::unique_ptr<lfc::LfcResizer>(std::move(resizer));
  }
  return absl::InvalidArgumentError("--lfc_resizer must be none, postgres or file:PATH, got " +
                                    kind);
}

absl::Status Run() {
  api::v1::MonitorConfig config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    RETURN_IF_ERROR(ReadProtoFile(absl::GetFlag(FLAGS_config), config));
  }
  if (absl::GetFlag(FLAGS_threshold_fraction) != 0) {
    config.set_threshold_fraction(absl::GetFlag(FLAGS_threshold_fraction));
  }
  monitor::CgroupMonitorOptions options;
  ASSIGN_OR_RETURN(options.monitor, monitor::OptionsFromProto(config));
  if (absl::GetFlag(FLAGS_sample_interval) > absl::ZeroDuration()) {
    options.monitor.sample_interval = absl::GetFlag(FLAGS_sample_interval);
  }
  if (absl::GetFlag(FLAGS_lfc_max_bytes) > 0) {
    options.monitor.lfc.max_bytes = absl::GetFlag(FLAGS_lfc_max_bytes);
  }
  ASSIGN_OR_RETURN(options.cgroup_dir, CgroupDir());
  ASSIGN_OR_RETURN(options.watch, monitor::ParseWatchMode(absl::GetFlag(FLAGS_watch)));
  options.psi_file = absl::GetFlag(FLAGS_psi_file);
  options.memory_high = absl::GetFlag(FLAGS_memory_high);
  std::function<std::vector<double>()> lfc_windows;
  const std::string windows_function = absl::GetFlag(FLAGS_lfc_windows_function);
  if (!windows_function.empty() && !absl::GetFlag(FLAGS_lfc_windows_file).empty()) {
    return absl::InvalidArgumentError(
        "--lfc_windows_file and --lfc_windows_function are two sources of the same windows: give "
        "one");
  }
  if (!windows_function.empty()) {
    // Called from the agent session's sender thread, never the event loop. A failure sends no
    // windows, and the agent goes on with the last ones it had.
    lfc::PostgresWorkingSetOptions o{.conninfo = absl::GetFlag(FLAGS_postgres_conninfo),
                                     .function = windows_function};
    RETURN_IF_ERROR(lfc::CheckPostgresWorkingSetOptions(o));
    lfc_windows = [o] {
      absl::StatusOr<std::vector<double>> w = lfc::ReadPostgresWorkingSet(o);
      if (w.ok()) return *std::move(w);
      LOG_EVERY_N(WARNING, 30) << "monitor: " << w.status();
      return std::vector<double>();
    };
  } else if (std::string file = absl::GetFlag(FLAGS_lfc_windows_file); !file.empty()) {
    lfc_windows = monitor::LfcWindowsFromFile(std::move(file));
  }
  monitor::MetricsReader metrics("/proc", std::move(lfc_windows));
  ASSIGN_OR_RETURN(monitor::MemInfo mem, metrics.ReadMemInfo());
  options.memory_bytes = absl::GetFlag(FLAGS_memory_bytes);
  if (options.memory_bytes <= 0) options.memory_bytes = mem.total_bytes;
  // In a VM, the kernel keeps part of the VM's memory out of MemTotal; on a larger host there is
  // nothing to take off.
  options.monitor.kernel_overhead_bytes =
      std::max<int64_t>(0, options.memory_bytes - mem.total_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<lfc::LfcResizer> resizer, MakeResizer());

  std::atomic<monitor::AgentLink*> link{nullptr};
  ASSIGN_OR_RETURN(
      std::unique_ptr<monitor::CgroupMonitor> cgroup_monitor,
      monitor::CgroupMonitor::Start(options, *resizer, [&](int64_t usage, int64_t threshold) {
        monitor::AgentLink* l = link.load();
        if (l == nullptr || !l->SendUpscaleRequest(usage, threshold)) {
          LOG(WARNING) << "monitor: no agent connected to send the upscale request to";
        }
      }));
  ASSIGN_OR_RETURN(rpc::Security security, rpc::SecurityFromTlsFlags("monitor"));
  ASSIGN_OR_RETURN(std::string trust_domain, rpc::TrustDomainFromFlags(security));
  // With mutual TLS only a node's agent may be the VM's agent (AgentLink): not the guest's own
  // processes, nor another certificate of the CA (a VM's monitor, the admin).
  // And with the VM's agent token, only the agent that launched the VM (or received it).
  std::string agent_token;
  if (const std::string path = absl::GetFlag(FLAGS_agent_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = rpc::monitor::ReadAgentToken(path);
    if (token.ok()) {
      agent_token = *std::move(token);
      LOG(INFO) << "monitor: admitting only the agent that holds the token in " << path;
    } else if (!(absl::IsNotFound(token.status()) && path == rpc::monitor::kGuestAgentTokenPath)) {
      return token.status();
    }
  }
  monitor::AgentLink agent_link(cgroup_monitor->monitor(), metrics,
                                {.metrics_interval = absl::GetFlag(FLAGS_metrics_interval),
                                 .require_agent_identity = security.tls(),
                                 .trust_domain = trust_domain,
                                 .agent_token = std::move(agent_token)});
  link = &agent_link;

  ASSIGN_OR_RETURN(
      std::unique_ptr<rpc::Server> server,
      rpc::monitor::StartGrpcServer(agent_link, absl::GetFlag(FLAGS_listen), security));
  std::unique_ptr<HttpServer> http;
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    HttpServer::Options o;
    o.what = "monitor";
    o.host = absl::GetFlag(FLAGS_http_host);
    o.port = absl::GetFlag(FLAGS_http_port);
    o.metrics = [&] { return MetricsText(cgroup_monitor->monitor(), agent_link); };
    ASSIGN_OR_RETURN(http, HttpServer::Start(std::move(o)));
  }

  if (absl::Status s = NotifyReady(); !s.ok()) LOG(WARNING) << s;
  const sigset_t signals = ShutdownSignals();
  int sig = 0;
  sigwait(&signals, &sig);
  (void)NotifyStopping();
  LOG(INFO) << "monitor: signal " << sig << ", shutting down";
  link = nullptr;
  agent_link.Disconnect();
  server->Shutdown(absl::Seconds(2));
  http.reset();
  return absl::OkStatus();
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  const sigset_t signals = autoscale::ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  autoscale::InitProgram(argc, argv, "monitor [flags]: the in-VM memory monitor; see --help");
  absl::Status s = autoscale::Run();
  if (!s.ok()) {
    LOG(ERROR) << "monitor: " << s;
    return 1;
  }
  return 0;
}
