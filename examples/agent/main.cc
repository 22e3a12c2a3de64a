// agent: the autoscaling agent of one node. Manages the VMs of its config file (an AgentConfig:
// each VM's QMP socket, monitor address, bounds and launch spec), asks the scheduler before
// growing them, asks their monitors before shrinking them, resizes them over QMP, and carries
// out the scheduler's live migrations with the target node's agent.
//
//   agent --config=/etc/autoscale/agent.json --listen=127.0.0.1:10400 --http_port=9101
//         --tls_cert=node-a.pem --tls_key=node-a.key --tls_ca=ca.pem   (or --insecure)
//
// With TLS every link (the scheduler, other agents, the monitors) is mutual TLS with this
// node's certificate (spiffe://<td>/node/<name>), so the monitors need certificates of the same
// CA too; so are the migration streams between the QEMUs (QEMU's TLS), where the certificates'
// names are checked: "CN=node-<name>", as the README's recipe makes them.
//
// HTTP: /metrics (Prometheus), /healthz, /readyz and /status (JSON: the VMs and the event log;
// ?since=N for the events after N).
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autoscale/agent/agent.h"
#include "autoscale/base/http_server.h"
#include "autoscale/base/init.h"
#include "autoscale/base/sd_notify.h"
#include "autoscale/base/units.h"
#include "autoscale/rpc/agent_peer/grpc_client.h"
#include "autoscale/rpc/agent_peer/grpc_server.h"
#include "autoscale/rpc/identity.h"
#include "autoscale/rpc/monitor/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/tls_flags.h"
#include "glog/logging.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/migration/migration.h"

ABSL_FLAG(std::string, config, "",
          "The agent's config file (an AgentConfig, .json or .textproto).");
ABSL_FLAG(std::string, listen, "127.0.0.1:10400",
          "Where this agent serves incoming migrations (host:port; 0.0.0.0 or [::] for every "
          "interface, with --advertise_address).");
ABSL_FLAG(std::string, advertise_address, "",
          "The host:port other agents dial for migrations to this node, registered with the "
          "scheduler (default: --listen, which must then name an address).");
ABSL_FLAG(std::string, migration_address, "",
          "The address of this node on which migrated-in VMs listen for their migration stream "
          "(TCP, on a port QEMU picks; IPv6 in brackets). Default: the host of "
          "--advertise_address; with a unix: address, a unix socket (every node on one machine).");
ABSL_FLAG(std::string, http_host, "127.0.0.1", "Address of the HTTP server (/metrics, /status).");
ABSL_FLAG(int, http_port, 9101, "Port of the HTTP server; 0 picks a free one, -1 turns it off.");
ABSL_FLAG(absl::Duration, scheduler_timeout, absl::Seconds(2), "Timeout of a scheduler call.");
ABSL_FLAG(bool, check_config, false,
          "Only check --config: print 'config OK' and exit 0, or the error and exit 2.");
ABSL_FLAG(std::string, vm_cgroup_parent, "/neonvm",
          "The host cgroup under which migrated-in VMs' QEMU processes get a group of their own "
          "(CPU quota = the VM's milli-CPU, memory cap); \"\" runs them without one.");
ABSL_FLAG(int64_t, vm_memory_overhead_mib, 512,
          "A migrated-in VM's host cgroup memory cap is its largest memory plus this, for QEMU "
          "itself.");
ABSL_FLAG(std::string, qemu_user, "",
          "The user the QEMUs of migrated-in VMs drop root to (\"\": autoscale-qemu, made by "
          "scripts/setup, when the agent runs as root; none otherwise). \"root\" keeps QEMU "
          "root (a warning: a guest that escapes QEMU owns the host).");
ABSL_FLAG(std::string, migration_tls_cert, "",
          "With TLS: the certificate QEMU presents on migration streams (CN or DNS SAN "
          "node-<this node>, no URI SAN), signed by --tls_ca; empty: --tls_cert, with a warning "
          "(QEMU, which may run as an unprivileged user and holds the file's key in memory, then "
          "holds this node's identity)");
ABSL_FLAG(std::string, migration_tls_key, "", "The private key of --migration_tls_cert");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write {\"listen\": ADDRESS, \"httpPort\": PORT} here (for scripts).");

namespace autoscale {
namespace {

// The address peers dial: a wildcard would make every peer dial itself.
absl::StatusOr<std::string> AdvertiseAddress(const std::string& listen,
                                             const std::string& advertise) {
  const std::string address = advertise.empty() ? listen : advertise;
  const size_t colon = address.rfind(':');
  const std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::" || host == "[::0]") {
    return absl::InvalidArgumentError(absl::StrCat(
        advertise.empty() ? "--listen=" : "--advertise_address=", address,
        ": peers cannot dial an unspecified address; pass --advertise_address=HOST:PORT with "
        "the address other nodes reach this one at"));
  }
  return address;
}

// Where migrated-in VMs listen: `flag`, or the host other agents dial this one at; "" (a unix
// socket) when that is a unix socket, as only agents of this machine can reach it.
absl::StatusOr<std::string> MigrationAddress(const std::string& advertise,
                                             const std::string& flag) {
  if (flag.empty() && advertise.rfind("unix:", 0) == 0) return std::string();
  const std::string host = flag.empty() ? advertise.substr(0, advertise.rfind(':')) : flag;
  // The source's QEMU dials the URI the target's QEMU reports: it must name one address.
  if (host == "0.0.0.0" || host == "[::]" || host == "[::0]" ||
      !neonvm::migration::CheckTargetUri(absl::StrCat("tcp:", host, ":1")).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "migration address \"", host, "\"", flag.empty() ? " (from --advertise_address)" : "",
        ": not one address of this node; pass --migration_address=HOST"));
  }
  return host;
}

int Run() {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    LOG(ERROR) << "--config is required";
    return 2;
  }
  absl::StatusOr<api::v1::AgentConfig> config = agent::LoadAgentConfig(config_path);
  if (absl::GetFlag(FLAGS_check_config)) {
    if (!config.ok())
      std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    else
      std::printf("config OK: node %s, %d VMs\n", config->node().c_str(), config->vms_size());
    return config.ok() ? 0 : 2;
  }
  if (!config.ok()) {
    LOG(ERROR) << config.status();
    return 2;
  }
  absl::StatusOr<rpc::Security> security = rpc::SecurityFromTlsFlags("agent");
  if (!security.ok()) {
    LOG(ERROR) << security.status();
    return 2;
  }
  // With TLS, the servers this agent calls must prove who they are: the scheduler, and for a
  // migration the order's target node (it receives the VM).
  absl::StatusOr<std::string> trust_domain = rpc::TrustDomainFromFlags(*security);
  if (!trust_domain.ok()) {
    LOG(ERROR) << trust_domain.status();
    return 2;
  }
  absl::StatusOr<std::unique_ptr<rpc::scheduler::SchedulerService>> scheduler =
      rpc::scheduler::NewGrpcClient(config->scheduler_address(),
                                    absl::GetFlag(FLAGS_scheduler_timeout), *security,
                                    rpc::ServerIdentity(*security, *trust_domain, "scheduler"));
  if (!scheduler.ok()) {
    LOG(ERROR) << scheduler.status();
    return 2;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts

  const std::string listen = absl::GetFlag(FLAGS_listen);
  absl::StatusOr<std::string> advertise =
      AdvertiseAddress(listen, absl::GetFlag(FLAGS_advertise_address));
  if (!advertise.ok()) {
    LOG(ERROR) << advertise.status();
    return 2;
  }
  absl::StatusOr<std::string> migration_address =
      MigrationAddress(*advertise, absl::GetFlag(FLAGS_migration_address));
  if (!migration_address.ok()) {
    LOG(ERROR) << migration_address.status();
    return 2;
  }
  LOG(INFO) << "migrated-in VMs take their streams on "
            << (migration_address->empty() ? "unix sockets" : "tcp:" + *migration_address);
  neonvm::launcher::HostCgroupSpec incoming_cgroup;
  incoming_cgroup.parent = absl::GetFlag(FLAGS_vm_cgroup_parent);
  if (incoming_cgroup.parent.empty()) {
    incoming_cgroup.mode = neonvm::launcher::HostCgroupSpec::Mode::kOff;
  }
  incoming_cgroup.memory_overhead_bytes = absl::GetFlag(FLAGS_vm_memory_overhead_mib) * kMiB;
  if (incoming_cgroup.mode != neonvm::launcher::HostCgroupSpec::Mode::kOff &&
      (incoming_cgroup.parent[0] != '/' || incoming_cgroup.memory_overhead_bytes < 0)) {
    LOG(ERROR) << "--vm_cgroup_parent must start with '/' and --vm_memory_overhead_mib must not "
                  "be negative";
    return 2;
  }
  // A missing user is reported now rather than at the first migration in.
  {
    neonvm::launcher::VmSpec probe;
    probe.user = absl::GetFlag(FLAGS_qemu_user);
    absl::Status s = neonvm::launcher::Validate(probe);
    if (s.ok()) s = neonvm::launcher::QemuRunAs(probe).status();
    if (!s.ok()) {
      LOG(ERROR) << "--qemu_user: " << s;
      return 2;
    }
  }
  // With TLS, the migration streams too: QEMU reads its certificate from a directory of its own
  // (links to the files, so rotations reach the next migration), removed at exit. QEMU's own
  // certificate names no identity: a guest that escapes QEMU (its user can read the copies QEMU
  // loads, and QEMU holds the key) cannot act as this node's agent with it.
  std::string migration_tls_dir;
  if (security->tls()) {
    const rpc::TlsFiles& f = security->files();
    std::string cert = absl::GetFlag(FLAGS_migration_tls_cert);
    std::string key = absl::GetFlag(FLAGS_migration_tls_key);
    if (cert.empty() != key.empty()) {
      LOG(ERROR) << "--migration_tls_cert and --migration_tls_key go together";
      return 2;
    }
    if (cert.empty()) {
      LOG(WARNING) << "no --migration_tls_cert: QEMU gets " << f.cert
                   << ", this node's identity; give it a certificate of its own";
      cert = f.cert;
      key = f.key;
    } else {
      absl::StatusOr<std::string> identity = rpc::CertificateIdentity(cert);
      if (!identity.ok() || !identity->empty()) {
        LOG(ERROR) << "--migration_tls_cert: "
                   << (identity.ok() ? absl::StrCat(cert, " names the identity ", *identity,
                                                    ": QEMU's certificate must name none")
                                     : identity.status().ToString());
        return 2;
      }
    }
    char tmpl[] = "/tmp/autoscale-migration-tls.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      LOG(ERROR) << "mkdtemp " << tmpl << ": " << std::strerror(errno);
      return 1;
    }
    migration_tls_dir = tmpl;
    if (absl::Status s = neonvm::migration::MakeTlsDir(migration_tls_dir, cert, key, f.ca);
        !s.ok()) {
      LOG(ERROR) << s;
      return 1;
    }
  } else {
    LOG(WARNING) << "migration streams are plaintext (--insecure)";
  }
  struct RemoveDir {
    const std::string& dir;
    ~RemoveDir() {
      std::error_code ec;
      if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  } remove_tls_dir{migration_tls_dir};
  std::unique_ptr<agent::VmDriverFactory> vms = agent::NewQemuVmDriverFactory(
      incoming_cgroup, migration_tls_dir, *migration_address, absl::GetFlag(FLAGS_qemu_user));
  agent::AgentOptions options;
  options.address = *advertise;
  options.migration_tls_dir = migration_tls_dir;
  // With TLS, another agent may act only on migrations whose source its certificate names.
  options.require_peer_identity = security->tls();
  options.trust_domain = *trust_domain;
  agent::Agent node_agent(
      options, **scheduler, *vms,
      [&](const std::string& address, const rpc::monitor::AgentBinding& binding,
          rpc::monitor::MonitorClient::Callbacks callbacks, absl::Duration timeout) {
        return rpc::monitor::ConnectGrpc(address, binding, std::move(callbacks), timeout, *security,
                                         *trust_domain);
      },
      [&](const std::string& address, const std::string& node) {
        return rpc::agent_peer::NewGrpcClient(
            address, absl::Seconds(60), *security,
            rpc::ServerIdentity(*security, *trust_domain, "node/" + node));
      });
  absl::StatusOr<std::unique_ptr<rpc::Server>> server = rpc::agent_peer::StartGrpcServer(
      [&](const std::string& identity) { return node_agent.ForCaller(identity); }, listen,
      *security);
  if (!server.ok()) {
    LOG(ERROR) << server.status();
    return 1;
  }
  if (absl::Status s = node_agent.Start(*config); !s.ok()) {
    LOG(ERROR) << s;
    return 1;
  }
  // The config file is re-read when it changes.
  agent::ConfigFileWatcher watcher(node_agent, config_path);

  std::unique_ptr<HttpServer> http;
  int http_port = -1;
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    HttpServer::Options o;
    o.what = "agent";
    o.host = absl::GetFlag(FLAGS_http_host);
    o.port = absl::GetFlag(FLAGS_http_port);
    o.metrics = [&] { return node_agent.MetricsText(); };
    o.pages.push_back({"/status", "application/json", [&](const HttpServer::Params& params) {
                         uint64_t since = 0;
                         if (auto it = params.find("since"); it != params.end()) {
                           (void)absl::SimpleAtoi(it->second, &since);
                         }
                         return node_agent.StatusJson(since);
                       }});
    absl::StatusOr<std::unique_ptr<HttpServer>> started = HttpServer::Start(std::move(o));
    if (!started.ok()) {
      LOG(ERROR) << started.status();
      return 1;
    }
    http = *std::move(started);
    http_port = http->port();
  }
  if (const std::string ready = absl::GetFlag(FLAGS_ready_file); !ready.empty()) {
    std::ofstream(ready + ".tmp") << "{\"listen\": \"" << listen
                                  << "\", \"httpPort\": " << http_port << "}\n";
    std::rename((ready + ".tmp").c_str(), ready.c_str());
  }
  LOG(INFO) << "agent for node " << config->node() << " running; migrations on " << listen;
  if (absl::Status s = NotifyReady(); !s.ok()) LOG(WARNING) << s;

  int sig = 0;
  sigwait(&signals, &sig);
  LOG(INFO) << "agent: signal " << sig << ", shutting down";
  (void)NotifyStopping();
  // The peer server first: a FinishIncoming still being answered (waiting for its VM to arrive,
  // up to incoming_timeout) uses the agent's incoming VMs, which Stop ends.
  (*server)->Shutdown(absl::Seconds(2));
  node_agent.Stop();
  http.reset();
  return 0;
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  autoscale::InitProgram(argc, argv, "agent --config=FILE [flags]: the node's autoscaling agent");
  return autoscale::Run();
}
