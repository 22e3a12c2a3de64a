// The scheduler daemon: the scheduler library (autoscale/scheduler) on a durable file store,
// served over gRPC, with Prometheus metrics. Flags and wiring only.
//
//   scheduler --data_dir=/var/lib/scheduler --listen=0.0.0.0:10299 --metrics_port=9100
//
// It answers agents' requests, places VMs, checks nodes against their watermark every
// --balance_interval (the source nodes' agents pick the orders up), ends migration orders not
// reported within --migration_timeout, snapshots the ledger every --snapshot_every records, and
// on SIGTERM or SIGINT stops taking calls, lets calls in flight finish, writes a last snapshot
// and exits 0. If the log cannot be written (a full disk, an I/O error) it keeps running: changes
// are refused with UNAVAILABLE, reads are answered, the log retries, and a full disk first uses
// --disk_reserve so that decreases are still recorded. A damaged log stops the start (exit 1)
// naming the damage; `ledgerctl` shows and repairs it.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "autoscale/base/http_server.h"
#include "autoscale/base/init.h"
#include "autoscale/base/sd_notify.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/migration_policy.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "autoscale/scheduler/scheduler.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, data_dir, "",
          "Directory of the durable ledger (log and snapshots); created if missing. Required.");
ABSL_FLAG(std::string, listen, "127.0.0.1:10299",
          "gRPC address: host:port (port 0 picks one) or unix:/path");
ABSL_FLAG(int, metrics_port, 9100,
          "HTTP port of /metrics (Prometheus), /healthz and /readyz on <metrics_host>; 0 picks a "
          "free port, -1 turns HTTP off");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1",
          "Address the HTTP server (/metrics, /healthz, /readyz) binds; 0.0.0.0 for every "
          "interface");
ABSL_FLAG(double, watermark, 0.9,
          "Watermark of nodes that register without one: fraction of the total, (0, 1]");
ABSL_FLAG(std::string, compute_unit, "250m/1GiB",
          "Compute unit of placements that name none (<milli-CPU>m/<memory>)");
ABSL_FLAG(std::string, migration_policy, "oldest_first",
          "Which VMs leave a node above its watermark: oldest_first or fewest_bytes");
ABSL_FLAG(absl::Duration, balance_interval, absl::Seconds(1),
          "How often nodes are checked against their watermark");
ABSL_FLAG(absl::Duration, recovery_grace, absl::Seconds(30),
          "After a restart, the longest a node waits for its agents before granting growth");
ABSL_FLAG(int64_t, snapshot_every, 100000,
          "Write a snapshot and compact the log after this many records");
ABSL_FLAG(bool, fsync, true, "fdatasync the log before answering (turn off only to experiment)");
ABSL_FLAG(absl::Duration, migration_timeout, absl::Hours(1),
          "A migration order not reported within this long is ended as failed");
ABSL_FLAG(int64_t, disk_reserve, int64_t{4} << 20,
          "Bytes kept allocated in --data_dir for a full disk: freed to go on recording "
          "decreases while growth is refused; 0: none");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write {\"grpc\": ADDRESS, \"metricsPort\": PORT} here (for scripts)");

namespace autoscale::scheduler {
namespace {

absl::Status WriteReadyFile(const std::string& path, const std::string& address, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << "{\"grpc\": \"" << address << "\", \"metricsPort\": " << port << "}\n";
    if (!f) return absl::UnavailableError(absl::StrCat("write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

// A unix socket left by a killed scheduler would make the bind fail.
void RemoveStaleSocket(const std::string& address) {
  if (!absl::StartsWith(address, "unix:")) return;
  const std::string path = address.substr(5);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) {
    LOG(ERROR) << "--data_dir is required";
    return 2;
  }
  absl::StatusOr<core::Resources> cu =
      core::ParseResources(absl::GetFlag(FLAGS_compute_unit), "--compute_unit");
  if (!cu.ok()) {
    LOG(ERROR) << cu.status();
    return 2;
  }
  std::shared_ptr<const ledger::MigrationPolicy> policy =
      ledger::NewMigrationPolicy(absl::GetFlag(FLAGS_migration_policy));
  if (policy == nullptr) {
    LOG(ERROR) << "--migration_policy must be oldest_first or fewest_bytes, got "
               << absl::GetFlag(FLAGS_migration_policy);
    return 2;
  }
  const SchedulerOptions options{
      .default_compute_unit = *cu,
      .ledger = {.default_watermark = absl::GetFlag(FLAGS_watermark),
                 .migration_policy = policy,
                 .seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())),
                 .recovery_grace = absl::GetFlag(FLAGS_recovery_grace)},
      .maintenance = {.snapshot_every = absl::GetFlag(FLAGS_snapshot_every),
                      .migration_timeout = absl::GetFlag(FLAGS_migration_timeout)}};
  if (absl::Status s = ValidateOptions(options); !s.ok()) {
    LOG(ERROR) << "flags: " << s;
    return 2;
  }

  // Signals are taken by sigtimedwait below; every thread started from here on blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::GetFlag(FLAGS_disk_reserve) < 0) {
    LOG(ERROR) << "--disk_reserve must be >= 0";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<ledger::FileStore>> store = ledger::FileStore::Open(
      {.dir = dir,
       .sync = absl::GetFlag(FLAGS_fsync),
       .reserve_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_disk_reserve))});
  if (!store.ok()) {
    LOG(ERROR) << "opening the ledger: " << store.status();
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler =
      Scheduler::Open(options, *std::move(store));
  if (!scheduler.ok()) {
    LOG(ERROR) << "recovering the ledger in " << dir << ": " << scheduler.status();
    return 1;
  }

  const std::string listen = absl::GetFlag(FLAGS_listen);
  RemoveStaleSocket(listen);
  absl::StatusOr<std::unique_ptr<rpc::Server>> server =
      rpc::scheduler::StartGrpcServer((*scheduler)->service(), listen);
  if (!server.ok()) {
    LOG(ERROR) << server.status();
    return 1;
  }

  std::unique_ptr<HttpServer> http;
  int metrics_port = -1;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    HttpServer::Options o;
    o.what = "scheduler";
    o.host = absl::GetFlag(FLAGS_metrics_host);
    o.port = absl::GetFlag(FLAGS_metrics_port);
    o.metrics = [&] { return (*scheduler)->MetricsText(); };
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(std::move(o));
    if (!started.ok()) {
      LOG(ERROR) << started.status();
      return 1;
    }
    http = *std::move(started);
    metrics_port = http->port();
  }
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    if (absl::Status s = WriteReadyFile(ready, (*server)->address(), metrics_port); !s.ok()) {
      LOG(ERROR) << s;
      return 1;
    }
  }

  if (absl::Status s = NotifyReady(); !s.ok()) LOG(WARNING) << s;
  // Maintenance rounds every --balance_interval until SIGTERM or SIGINT.
  (*scheduler)->Run(absl::GetFlag(FLAGS_balance_interval), [&signals](absl::Duration interval) {
    const timespec wait = absl::ToTimespec(interval);
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig != SIGTERM && sig != SIGINT) return false;
    LOG(INFO) << "signal " << sig << ": shutting down";
    return true;
  });

  (void)NotifyStopping();
  (*server)->Shutdown(absl::Seconds(2));
  http.reset();
  if (absl::Status s = (*scheduler)->Snapshot(); !s.ok()) LOG(ERROR) << "final snapshot: " << s;
  server->reset();
  scheduler->reset();
  LOG(INFO) << "scheduler stopped";
  return 0;
}

}  // namespace
}  // namespace autoscale::scheduler

int main(int argc, char** argv) {
  autoscale::InitProgram(argc, argv,
                         "Usage: scheduler --data_dir=DIR [--listen=HOST:PORT|unix:PATH] "
                         "[--metrics_port=N] [--watermark=F] [--compute_unit=250m/1GiB]");
  return autoscale::scheduler::Run();
}
