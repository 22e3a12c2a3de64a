// The scheduler daemon: the scheduler library (autoscale/scheduler) on a durable store, served
// over gRPC, with Prometheus metrics. Flags and wiring only.
//
//   scheduler --store=file:/var/lib/scheduler --listen=0.0.0.0:10299 --metrics_port=9100
//             --tls_cert=sched.pem --tls_key=sched.key --tls_ca=ca.pem
//   scheduler --store=etcd:10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 --etcd_prefix=/autoscale
//             --listen=0.0.0.0:10299 --advertise=10.0.0.5:10299 --tls_cert=... (or --insecure)
//
// With --tls_cert, --tls_key and --tls_ca every gRPC caller must present a certificate of that
// CA, and is authorized by its identity (scheduler::Authz: an agent acts on its own node only;
// placement, release, node lifecycle and whole reads need admin). --insecure serves plaintext to
// anyone, for local development.
//
// It answers agents' requests, places VMs, checks nodes against their watermark every
// --balance_interval (the source nodes' agents pick the orders up), ends migration orders not
// reported within --migration_timeout, snapshots the ledger every --snapshot_every records, and
// on SIGTERM or SIGINT stops taking calls, lets calls in flight finish, writes a last snapshot
// and exits 0. If the log cannot be written (a full disk, an I/O error, etcd out of reach) it
// keeps running: changes are refused with UNAVAILABLE, reads are answered, the log retries.
//
// On a file store (the default; --data_dir=DIR is --store=file:DIR) it is the only scheduler; a
// full disk first uses --disk_reserve so that decreases are still recorded, and a damaged log
// stops the start (exit 1) naming the damage (`ledgerctl` shows and repairs it). On etcd, every
// scheduler started with the same endpoints and prefix joins one active/standby group
// (scheduler::HaScheduler): one leads, the others follow the ledger and send clients to it, and
// one of them takes over once the leader's lease expires; a clean stop resigns, so a standby
// takes over at once.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "autoscale/base/http_server.h"
#include "autoscale/base/init.h"
#include "autoscale/base/sd_notify.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/migration_policy.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "autoscale/rpc/tls_flags.h"
#include "autoscale/scheduler/authz.h"
#include "autoscale/scheduler/ha_scheduler.h"
#include "autoscale/scheduler/scheduler.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, store, "",
          "Where the ledger lives: file:DIR (a log and snapshots in a directory, created if "
          "missing) or etcd:HOST:PORT,... (etcd v3; the schedulers sharing --etcd_prefix form an "
          "active/standby group). One of --store and --data_dir is required.");
ABSL_FLAG(std::string, data_dir, "", "The same as --store=file:DIR");
ABSL_FLAG(std::string, etcd_prefix, "/autoscale",
          "etcd: this scheduler group's keys go under this prefix");
ABSL_FLAG(std::string, etcd_ca, "", "etcd over TLS: the CA of the members' certificates (PEM)");
ABSL_FLAG(std::string, etcd_cert, "",
          "etcd over TLS: this scheduler's client certificate (PEM), for members that require one");
ABSL_FLAG(std::string, etcd_key, "", "etcd over TLS: the key of --etcd_cert (PEM)");
ABSL_FLAG(absl::Duration, etcd_timeout, absl::Seconds(1),
          "etcd: each call waits at most this long before the next member is tried");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(2),
          "etcd: the leader's lease (whole seconds; etcd raises it to 1.5 election timeouts): a "
          "standby takes over about this long after the leader dies or is cut off");
ABSL_FLAG(std::string, advertise, "",
          "etcd: where clients reach this scheduler (standbys send them here while it leads); "
          "default: --listen, unless that is a wildcard host or port 0");
ABSL_FLAG(absl::Duration, etcd_refuse_after, absl::Seconds(2),
          "etcd: ledger writes failing this long (no quorum, not only a leader election) make "
          "the scheduler refuse changes until a write lands; shorter failures only delay answers");
ABSL_FLAG(bool, etcd_compact, true, "etcd: compact etcd's history after each ledger snapshot");
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
ABSL_FLAG(std::string, max_node_total, "448000m/24TiB",
          "With TLS: the largest total a node's agent may register a node the scheduler does not "
          "know yet with (<milli-CPU>m/<memory>; the default is the largest single machines "
          "clouds sell; set your own hardware's; empty: no cap). A known node's agent can never "
          "raise its total or watermark; the admin can");
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
          "File store: bytes kept allocated in its directory for a full disk, freed to go on "
          "recording decreases while growth is refused; 0: none");
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

struct StoreFlag {
  std::string dir;                     // file:
  std::vector<std::string> endpoints;  // etcd:
};

absl::StatusOr<StoreFlag> ParseStoreFlag() {
  std::string store = absl::GetFlag(FLAGS_store);
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (store.empty() && dir.empty()) {
    return absl::InvalidArgumentError(
        "--store (file:DIR or etcd:ENDPOINTS) or --data_dir is required");
  }
  if (!store.empty() && !dir.empty() && store != "file:" + dir) {
    return absl::InvalidArgumentError("give --store or --data_dir, not both");
  }
  if (store.empty()) store = "file:" + dir;
  absl::string_view rest = store;
  StoreFlag out;
  if (absl::ConsumePrefix(&rest, "file:")) {
    if (rest.empty()) return absl::InvalidArgumentError("--store=file: needs a directory");
    out.dir = std::string(rest);
    return out;
  }
  if (absl::ConsumePrefix(&rest, "etcd:")) {
    absl::StatusOr<std::vector<std::string>> endpoints =
        ledger::etcd::ParseEndpoints(std::string(rest));
    if (!endpoints.ok()) return Annotate(endpoints.status(), "--store");
    out.endpoints = *std::move(endpoints);
    return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--store must be file:DIR or etcd:HOST:PORT,..., got ", store));
}

// The etcd flags, checked before anything connects, each error naming its flag.
absl::Status ValidateEtcdFlags() {
  const std::string prefix = absl::GetFlag(FLAGS_etcd_prefix);
  if (prefix.size() < 2 || prefix.front() != '/' || prefix.back() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "--etcd_prefix must start with / and not end with one (e.g. /autoscale), got \"", prefix,
        "\""));
  }
  const absl::Duration ttl = absl::GetFlag(FLAGS_lease_ttl);
  if (ttl < absl::Seconds(1) || ttl != absl::Seconds(absl::ToInt64Seconds(ttl))) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lease_ttl must be whole seconds, at least 1s (etcd leases count in "
                     "seconds), got ",
                     absl::FormatDuration(ttl)));
  }
  const absl::Duration timeout = absl::GetFlag(FLAGS_etcd_timeout);
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--etcd_timeout must be > 0, got ", absl::FormatDuration(timeout)));
  }
  if (absl::GetFlag(FLAGS_etcd_refuse_after) < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--etcd_refuse_after must be >= 0");
  }
  const bool ca = !absl::GetFlag(FLAGS_etcd_ca).empty();
  const bool cert = !absl::GetFlag(FLAGS_etcd_cert).empty();
  const bool key = !absl::GetFlag(FLAGS_etcd_key).empty();
  if (cert != key)
    return absl::InvalidArgumentError("give both --etcd_cert and --etcd_key, or neither");
  if (cert && !ca) {
    return absl::InvalidArgumentError("--etcd_cert and --etcd_key need --etcd_ca (TLS) as well");
  }
  return absl::OkStatus();
}

// Where clients reach this scheduler: --advertise, or --listen when clients can dial it.
absl::StatusOr<std::string> Advertise(const std::string& listen) {
  if (std::string a = absl::GetFlag(FLAGS_advertise); !a.empty()) return a;
  if (absl::StartsWith(listen, "unix:")) return listen;
  const size_t colon = listen.rfind(':');
  const std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || port == "0" || port.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen=", listen, " is not an address clients can dial: give --advertise"));
  }
  return listen;
}

// A unix socket left by a killed scheduler would make the bind fail.
void RemoveStaleSocket(const std::string& address) {
  if (!absl::StartsWith(address, "unix:")) return;
  const std::string path = address.substr(5);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
}

int Run() {
  absl::StatusOr<StoreFlag> store_flag = ParseStoreFlag();
  if (!store_flag.ok()) {
    LOG(ERROR) << store_flag.status();
    return 2;
  }
  absl::StatusOr<core::Resources> cu =
      core::ParseResources(absl::GetFlag(FLAGS_compute_unit), "--compute_unit");
  if (!cu.ok()) {
    LOG(ERROR) << cu.status();
    return 2;
  }
  core::Resources max_node_total;
  if (!absl::GetFlag(FLAGS_max_node_total).empty()) {
    absl::StatusOr<core::Resources> cap =
        core::ParseResources(absl::GetFlag(FLAGS_max_node_total), "--max_node_total");
    if (!cap.ok()) {
      LOG(ERROR) << cap.status();
      return 2;
    }
    max_node_total = *cap;
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
  const std::string listen = absl::GetFlag(FLAGS_listen);
  absl::StatusOr<rpc::Security> security = rpc::SecurityFromTlsFlags("scheduler");
  if (!security.ok()) {
    LOG(ERROR) << security.status();
    return 2;
  }
  absl::StatusOr<std::string> trust_domain = rpc::TrustDomainFromFlags(*security);
  if (!trust_domain.ok()) {
    LOG(ERROR) << trust_domain.status();
    return 2;
  }

  // Signals are taken by sigtimedwait below; every thread started from here on blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // One of the two: a scheduler alone on its file store, or a member of a group on etcd.
  std::unique_ptr<Scheduler> single;
  std::unique_ptr<HaScheduler> member;
  if (!store_flag->dir.empty()) {
    const std::string& dir = store_flag->dir;
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
    single = *std::move(scheduler);
  } else {
    if (absl::Status s = ValidateEtcdFlags(); !s.ok()) {
      LOG(ERROR) << s;
      return 2;
    }
    absl::StatusOr<std::string> advertise = Advertise(listen);
    if (!advertise.ok()) {
      LOG(ERROR) << advertise.status();
      return 2;
    }
    absl::StatusOr<std::unique_ptr<HaScheduler>> ha =
        HaScheduler::Start({.scheduler = options,
                            .etcd = {.endpoints = store_flag->endpoints,
                                     .ca_file = absl::GetFlag(FLAGS_etcd_ca),
                                     .cert_file = absl::GetFlag(FLAGS_etcd_cert),
                                     .key_file = absl::GetFlag(FLAGS_etcd_key),
                                     .timeout = absl::GetFlag(FLAGS_etcd_timeout)},
                            .prefix = absl::GetFlag(FLAGS_etcd_prefix),
                            .advertise = *advertise,
                            .lease_ttl = absl::GetFlag(FLAGS_lease_ttl),
                            .compact = absl::GetFlag(FLAGS_etcd_compact),
                            .refuse_after = absl::GetFlag(FLAGS_etcd_refuse_after)});
    if (!ha.ok()) {
      LOG(ERROR) << "joining the scheduler group on etcd: " << ha.status();
      return 2;
    }
    member = *std::move(ha);
  }
  rpc::scheduler::SchedulerService& service = single ? single->service() : member->service();

  // With TLS every call is authorized by its caller's identity; plaintext callers are anonymous
  // and get everything (what --insecure gives up).
  Authz authz(service,
              [&](const std::string& vm) -> absl::StatusOr<ledger::VmInfo> {
                return single ? single->ledger().GetVm(vm) : member->GetVm(vm);
              },
              {.trust_domain = *trust_domain, .max_node_total = max_node_total});
  RemoveStaleSocket(listen);
  absl::StatusOr<std::unique_ptr<rpc::Server>> server =
      security->tls()
          ? rpc::scheduler::StartGrpcServer(
                [&](const std::string& identity) { return authz.For(identity); }, listen, *security)
          : rpc::scheduler::StartGrpcServer(service, listen, *security);
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
    o.metrics = [&] {
      return (single ? single->MetricsText() : member->MetricsText()) + authz.MetricsText();
    };
    if (member) {
      // Ready while leading: a standby only sends clients on, so balancers should skip it.
      o.ready = [&]() -> absl::Status {
        if (member->leading()) return absl::OkStatus();
        const std::string leader = member->leader();
        return absl::UnavailableError(
            absl::StrCat("a standby; the leader is ", leader.empty() ? "not known yet" : leader));
      };
    }
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
  // Maintenance rounds every --balance_interval (a group member also follows the election) until
  // SIGTERM or SIGINT.
  auto wait = [&signals](absl::Duration interval) {
    const timespec wait = absl::ToTimespec(interval);
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig != SIGTERM && sig != SIGINT) return false;
    LOG(INFO) << "signal " << sig << ": shutting down";
    return true;
  };
  const absl::Duration interval = absl::GetFlag(FLAGS_balance_interval);
  if (single) {
    single->Run(interval, wait);
  } else {
    member->Run(interval, wait);
  }

  (void)NotifyStopping();
  (*server)->Shutdown(absl::Seconds(2));
  http.reset();
  // A last snapshot; a group member then resigns, so a standby takes over at once.
  if (absl::Status s = single ? single->Snapshot() : member->Stop(); !s.ok()) {
    LOG(ERROR) << "final snapshot: " << s;
  }
  server->reset();
  single.reset();
  member.reset();
  LOG(INFO) << "scheduler stopped";
  return 0;
}

}  // namespace
}  // namespace autoscale::scheduler

int main(int argc, char** argv) {
  autoscale::InitProgram(argc, argv,
                         "Usage: scheduler --store=file:DIR|etcd:HOST:PORT,... "
                         "--tls_cert=PEM --tls_key=PEM --tls_ca=PEM|--insecure "
                         "[--listen=HOST:PORT|unix:PATH] [--metrics_port=N] [--watermark=F] "
                         "[--compute_unit=250m/1GiB]");
  return autoscale::scheduler::Run();
}
