#include "autoscale/testing/cluster.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "autoscale/testing/vm.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "neonvm/guest/image.h"
#include "rapidjson/document.h"

namespace autoscale::testing {
namespace {

constexpr int kMonitorPort = 10301;
constexpr char kWorkCgroup[] = "/sys/fs/cgroup/memory/work";
// The identities of the cluster's certificates: spiffe://autoscale.test/node/a, ...
// Every daemon accepts only identities of it: the default --trust_domain, its own certificate's.
constexpr char kTrustDomain[] = "spiffe://autoscale.test";

bool Exists(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

std::string ResourcesFlag(const core::Resources& r) {
  return absl::StrCat(r.milli_cpu, "m/", r.memory_bytes);
}

absl::Status WriteText(const std::string& path, const std::string& text, bool executable = false) {
  {
    std::ofstream out(path + ".tmp");
    out << text;
    if (!out) return absl::UnavailableError("cannot write " + path);
  }
  if (executable) chmod((path + ".tmp").c_str(), 0755);
  if (std::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, "rename to " + path);
  }
  return absl::OkStatus();
}

std::unique_ptr<api::v1::Scheduler::Stub> SchedulerStub(const std::string& address,
                                                        const rpc::Security& security) {
  return api::v1::Scheduler::NewStub(
      grpc::CreateChannel(address, rpc::ChannelCredentials(security)));
}

void Deadline(grpc::ClientContext& context, absl::Duration d) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(absl::ToInt64Microseconds(d)));
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace

absl::StatusOr<Binaries> FindBinaries() {
  std::vector<std::string> roots = {".", "bazel-bin"};
  if (const char* r = getenv("RUNFILES_DIR")) roots.push_back(std::string(r) + "/autoscale");
  if (const char* r = getenv("TEST_SRCDIR")) roots.push_back(std::string(r) + "/autoscale");
  std::error_code ec;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (!ec) roots.push_back(self + ".runfiles/autoscale");
  for (const std::string& root : roots) {
    Binaries b{root + "/examples/scheduler/scheduler", root + "/examples/agent/agent",
               root + "/examples/monitor/monitor", root + "/neonvm/guest/loadgen",
               root + "/examples/demo/memstep"};
    if (Exists(b.scheduler) && Exists(b.agent) && Exists(b.monitor) && Exists(b.loadgen) &&
        Exists(b.memstep)) {
      return b;
    }
  }
  return absl::NotFoundError(
      "cannot find the cluster's binaries (scheduler, agent, monitor, loadgen, memstep); build "
      "them: bazel build //examples/... //neonvm/guest:loadgen");
}

// --- Guest ---

absl::StatusOr<std::string> Guest::Run(const std::string& command, absl::Duration timeout) {
  if (console == nullptr) return absl::FailedPreconditionError(name_ + ": no console");
  absl::StatusOr<std::string> out = console->Run(command, timeout);
  if (!out.ok()) return Annotate(out.status(), "guest " + name_);
  return out;
}

absl::StatusOr<int64_t> Guest::MemTotalBytes() {
  ASSIGN_OR_RETURN(std::string out,
                   Run("sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"));
  int64_t kib;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &kib)) {
    return absl::InternalError(name_ + ": unreadable MemTotal: " + out);
  }
  return kib * 1024;
}

absl::StatusOr<int> Guest::OnlineCpus() {
  ASSIGN_OR_RETURN(std::string out, Run("nproc"));
  int n;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &n)) {
    return absl::InternalError(name_ + ": unreadable nproc: " + out);
  }
  return n;
}

absl::Status Guest::AddLoad(int memory_mib, int cpu_threads) {
  RETURN_IF_ERROR(
      Run(absl::StrCat("sh -c 'echo $$ > ", kWorkCgroup,
                       "/cgroup.procs; exec /usr/bin/loadgen --memory-mib=", memory_mib,
                       " --cpu-threads=", cpu_threads, "' >> /var/log/loadgen.log 2>&1 &"))
          .status());
  ++loads_started_;
  return absl::OkStatus();
}

absl::StatusOr<LoadReport> Guest::StopLoad() {
  ASSIGN_OR_RETURN(std::string out,
                   Run("if pidof loadgen >/dev/null; then killall -TERM loadgen; "
                       "while pidof loadgen >/dev/null; do sleep 0.1; done; fi; "
                       "cat /var/log/loadgen.log 2>/dev/null; rm -f /var/log/loadgen.log; true",
                       absl::Seconds(60)));
  // The console's shell may add job notices ("[1]+ Done ..."): keep the load generators' lines.
  LoadReport report;
  report.started = loads_started_;
  loads_started_ = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(line, "loadgen:")) report.lines.emplace_back(line);
  }
  return report;
}

bool LoadReport::AllVerified() const {
  if (started == 0 || static_cast<int>(lines.size()) != started) return false;
  for (const std::string& line : lines) {
    if (!absl::StrContains(line, "verified")) return false;
  }
  return true;
}

absl::StatusOr<std::string> Guest::MeasureReaction(absl::Duration timeout) {
  RETURN_IF_ERROR(
      Run(absl::StrCat("rm -f /var/log/memstep.log; sh -c 'echo $$ > ", kWorkCgroup,
                       "/cgroup.procs; exec /usr/bin/memstep --timeout-ms=",
                       absl::ToInt64Milliseconds(timeout), "' > /var/log/memstep.log 2>&1 &"))
          .status());
  const absl::Time deadline = absl::Now() + timeout + absl::Seconds(10);
  std::string line;
  while (absl::Now() < deadline) {
    ASSIGN_OR_RETURN(line, Run("cat /var/log/memstep.log 2>/dev/null; true"));
    if (absl::StrContains(line, "memstep:")) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  (void)Run(
      "killall -TERM memstep 2>/dev/null; while pidof memstep >/dev/null; do sleep 0.1; done");
  if (!absl::StrContains(line, "memstep:")) {
    std::string diag = Run("dmesg | tail -n 15; tail -n 15 /var/log/monitor.log; "
                           "cat /sys/fs/cgroup/memory/work/memory.usage_in_bytes; free")
                           .value_or("(no console)");
    return absl::DeadlineExceededError(
        absl::StrCat(name_, ": memstep reported nothing: ", line, "\nguest:\n", diag));
  }
  return std::string(absl::StripAsciiWhitespace(line));
}

absl::Status Guest::KillMonitor() {
  return Run("killall -KILL monitor; while pidof monitor >/dev/null; do sleep 0.1; done").status();
}

absl::Status Guest::StartMonitor() {
  return Run("/usr/bin/run-monitor >/dev/null 2>&1 &").status();
}

absl::StatusOr<int64_t> Guest::LfcBytes() {
  ASSIGN_OR_RETURN(std::string out, Run("cat /run/lfc_size"));
  int64_t bytes;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &bytes)) {
    return absl::InternalError(name_ + ": unreadable /run/lfc_size: " + out);
  }
  return bytes;
}

absl::StatusOr<std::string> Guest::MonitorLog() { return Run("cat /var/log/monitor.log"); }

// --- Cluster ---

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(ClusterOptions options) {
  auto c = std::unique_ptr<Cluster>(new Cluster(std::move(options)));
  if (c->options_.dir.empty()) {
    char tmpl[] = "/tmp/autoscale-cluster.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::ErrnoToStatus(errno, "mkdtemp");
    c->dir_ = tmpl;
    c->own_dir_ = true;
  } else {
    c->dir_ = c->options_.dir;
    std::filesystem::create_directories(c->dir_);
  }
  if (c->options_.tls) {
    ASSIGN_OR_RETURN(TestCa ca, TestCa::Create(c->dir_ + "/pki", "autoscale-cluster-ca"));
    c->ca_ = std::make_unique<TestCa>(std::move(ca));
    ASSIGN_OR_RETURN(rpc::TlsFiles admin,
                     c->ca_->Issue("admin", absl::StrCat(kTrustDomain, "/admin")));
    ASSIGN_OR_RETURN(c->admin_, rpc::Security::MutualTls(admin));
    LOG(INFO) << "cluster: mutual TLS between all daemons, with a throwaway CA in " << c->dir_
              << "/pki";
  }
  if (c->options_.hosts != nullptr && c->options_.nodes.size() > 2) {
    return absl::InvalidArgumentError("a HostsNetwork has two hosts: at most two nodes");
  }
  RETURN_IF_ERROR(c->StartScheduler());
  for (const NodeOptions& n : c->options_.nodes) {
    c->node_vms_[n.name];
    RETURN_IF_ERROR(c->WriteAgentConfig(n.name));
    RETURN_IF_ERROR(c->StartAgent(n.name));
  }
  return c;
}

Cluster::~Cluster() {
  for (auto& [node, agent] : agents_) {
    if (agent) agent->Stop(SIGTERM, absl::Seconds(10));
  }
  agents_.clear();
  if (scheduler_) scheduler_->Stop(SIGTERM, absl::Seconds(5));
  guests_.clear();  // kills the QEMUs
  if (own_dir_ && getenv("AUTOSCALE_KEEP_CLUSTER") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

absl::StatusOr<std::vector<std::string>> Cluster::SecurityFlags(const std::string& file,
                                                                const std::string& uri) {
  if (ca_ == nullptr) return std::vector<std::string>{"--insecure"};
  rpc::TlsFiles files{.cert = absl::StrCat(ca_->dir(), "/", file, ".pem"),
                      .key = absl::StrCat(ca_->dir(), "/", file, ".key"),
                      .ca = ca_->ca_file()};
  if (!std::filesystem::exists(files.cert)) {
    ASSIGN_OR_RETURN(files, ca_->Issue(file, uri));
  }
  return std::vector<std::string>{"--tls_cert=" + files.cert, "--tls_key=" + files.key,
                                  "--tls_ca=" + files.ca};
}

absl::StatusOr<rpc::Security> Cluster::ClientSecurity(const std::string& file,
                                                      const std::string& uri) {
  if (ca_ == nullptr) return absl::FailedPreconditionError("the cluster runs without TLS");
  ASSIGN_OR_RETURN(rpc::TlsFiles files, ca_->Issue(file, uri));
  return rpc::Security::MutualTls(files);
}

absl::Status Cluster::StartScheduler() {
  std::vector<std::string> argv = {
      options_.bin.scheduler,
      "--data_dir=" + dir_ + "/ledger",
      "--listen=" + scheduler_address(),
      "--metrics_port=0",
      "--metrics_host=127.0.0.1",
      "--compute_unit=" + ResourcesFlag(options_.compute_unit),
      absl::StrCat("--balance_interval=", absl::FormatDuration(options_.balance_interval)),
      "--recovery_grace=10s"};
  ASSIGN_OR_RETURN(std::vector<std::string> security,
                   SecurityFlags("scheduler", absl::StrCat(kTrustDomain, "/scheduler")));
  argv.insert(argv.end(), security.begin(), security.end());
  absl::StatusOr<std::unique_ptr<Daemon>> scheduler = Daemon::Start(
      {.argv = argv, .log = dir_ + "/scheduler.log", .ready_file = dir_ + "/scheduler.ready"});
  if (!scheduler.ok()) return Annotate(scheduler.status(), "starting the scheduler");
  scheduler_ = std::move(*scheduler);
  return absl::OkStatus();
}

absl::Status Cluster::KillScheduler() {
  if (scheduler_) scheduler_->Kill();
  return absl::OkStatus();
}

const HostsNetwork::Host* Cluster::NodeHost(const std::string& node) const {
  if (options_.hosts == nullptr) return nullptr;
  for (size_t i = 0; i < options_.nodes.size(); ++i) {
    if (options_.nodes[i].name == node) return &options_.hosts->host(static_cast<int>(i));
  }
  return nullptr;
}

std::string Cluster::NodeNetns(const std::string& node) const {
  const HostsNetwork::Host* host = NodeHost(node);
  return host == nullptr ? "" : "/run/netns/" + host->netns;
}

std::string Cluster::AgentAddress(const std::string& node) const {
  return absl::StrCat("unix:", dir_, "/agent-", node, ".sock");
}

absl::Status Cluster::WriteAgentConfig(const std::string& node) {
  const NodeOptions* n = nullptr;
  for (const NodeOptions& o : options_.nodes) {
    if (o.name == node) n = &o;
  }
  if (n == nullptr) return absl::NotFoundError("no node " + node);
  api::v1::AgentConfig c;
  c.set_node(node);
  c.set_scheduler_address(scheduler_address());
  c.mutable_compute_unit()->set_milli_cpu(options_.compute_unit.milli_cpu);
  c.mutable_compute_unit()->set_memory_bytes(options_.compute_unit.memory_bytes);
  *c.mutable_scaling() = options_.scaling;
  *c.mutable_node_total() = core::ToProto(n->total);
  c.set_watermark(n->watermark);
  // Under TCG, precopy of a guest that keeps writing can lose writes: switch to postcopy at once
  // (every VM allows it) and leave auto-converge off.
  c.mutable_migration()->set_postcopy_after_passes(1);
  for (const api::v1::VmConfig& vm : node_vms_[node]) *c.add_vms() = vm;
  // Every other node's VMs may migrate here: the agent starts their targets from this
  // description only (as an orchestrator would hand it every node), never from the source's.
  for (const auto& [other, vms] : node_vms_) {
    if (other == node) continue;
    for (const api::v1::VmConfig& vm : vms) {
      api::v1::VmConfig& incoming = *c.add_incoming_vms();
      incoming = vm;
      incoming.clear_qmp();
      incoming.clear_monitor_address();
      incoming.clear_host_cgroup();
    }
  }
  return WriteText(absl::StrCat(dir_, "/agent-", node, ".json"), ToJson(c) + "\n");
}

absl::Status Cluster::WriteAgentConfigs() {
  for (const NodeOptions& n : options_.nodes) RETURN_IF_ERROR(WriteAgentConfig(n.name));
  return absl::OkStatus();
}

absl::Status Cluster::StartAgent(const std::string& node) {
  const std::string socket = AgentAddress(node).substr(5);
  std::remove(socket.c_str());
  std::vector<std::string> argv = {options_.bin.agent,
                                   absl::StrCat("--config=", dir_, "/agent-", node, ".json"),
                                   "--listen=" + AgentAddress(node), "--http_port=0"};
  // On a host of its own, the migrated-in VMs listen on the host's address: the stream crosses
  // from one host's namespace to the other's over TCP, as between machines.
  if (const HostsNetwork::Host* host = NodeHost(node)) {
    argv.push_back("--migration_address=" + host->address);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> security,
                   SecurityFlags("node-" + node, absl::StrCat(kTrustDomain, "/node/", node)));
  argv.insert(argv.end(), security.begin(), security.end());
  if (ca_ != nullptr) {
    // QEMU's certificate for the migration streams: the node's name for QEMU's checks, and no
    // identity the other daemons would accept.
    const std::string file = absl::StrCat("node-", node, "-migration");
    if (!std::filesystem::exists(absl::StrCat(ca_->dir(), "/", file, ".pem"))) {
      RETURN_IF_ERROR(ca_->Issue(file, "", {.common_name = "node-" + node}).status());
    }
    argv.push_back(absl::StrCat("--migration_tls_cert=", ca_->dir(), "/", file, ".pem"));
    argv.push_back(absl::StrCat("--migration_tls_key=", ca_->dir(), "/", file, ".key"));
  }
  ASSIGN_OR_RETURN(agents_[node],
                   Daemon::Start({.argv = argv,
                                  .log = absl::StrCat(dir_, "/agent-", node, ".log"),
                                  .ready_file = absl::StrCat(dir_, "/agent-", node, ".ready"),
                                  // Its HTTP server's 127.0.0.1 and the QEMU ports it forwards
                                  // are that namespace's too.
                                  .netns = NodeNetns(node)}));
  const std::string& text = agents_[node]->ready();
  rapidjson::Document doc;
  doc.Parse(text.c_str());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("httpPort") ||
      !doc["httpPort"].IsInt()) {
    return absl::InternalError("unreadable agent ready file: " + text);
  }
  agent_http_ports_[node] = doc["httpPort"].GetInt();
  return absl::OkStatus();
}

absl::Status Cluster::KillAgent(const std::string& node) {
  auto it = agents_.find(node);
  if (it == agents_.end() || !it->second) return absl::NotFoundError("no agent for " + node);
  it->second->Kill();
  return absl::OkStatus();
}

int Cluster::AgentHttpPort(const std::string& node) const {
  auto it = agent_http_ports_.find(node);
  return it == agent_http_ports_.end() ? -1 : it->second;
}

absl::StatusOr<api::v1::AgentStatus> Cluster::AgentStatus(const std::string& node, uint64_t since) {
  const int port = AgentHttpPort(node);
  if (port <= 0) return absl::NotFoundError("no agent for node " + node);
  // The agent's 127.0.0.1 is its host's: with hosts, the request is made from there.
  std::optional<std::string> body;
  auto get = [&] {
    httplib::Client http("127.0.0.1", port);
    http.set_connection_timeout(2);
    http.set_read_timeout(5);
    auto res = http.Get(absl::StrCat("/status?since=", since).c_str());
    if (res && res->status == 200) body = res->body;
  };
  if (NodeHost(node) != nullptr) {
    RETURN_IF_ERROR(options_.hosts->RunIn(NodeHost(node)->netns, get));
  } else {
    get();
  }
  if (!body.has_value()) {
    return absl::UnavailableError(absl::StrCat("agent of node ", node, ": no status"));
  }
  api::v1::AgentStatus status;
  RETURN_IF_ERROR(ParseJsonProto(*body, status, absl::StrCat("agent status of node ", node)));
  return status;
}

absl::StatusOr<api::v1::ListVmsResponse> Cluster::SchedulerVms() {
  auto stub = SchedulerStub(scheduler_address(), admin_);
  grpc::ClientContext context;
  Deadline(context, absl::Seconds(5));
  api::v1::ListRequest req;
  req.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  api::v1::ListVmsResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->ListVms(&context, req, &resp), "scheduler ListVms"));
  return resp;
}

absl::StatusOr<api::v1::ListNodesResponse> Cluster::SchedulerNodes() {
  auto stub = SchedulerStub(scheduler_address(), admin_);
  grpc::ClientContext context;
  Deadline(context, absl::Seconds(5));
  api::v1::ListRequest req;
  req.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  api::v1::ListNodesResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->ListNodes(&context, req, &resp), "scheduler ListNodes"));
  return resp;
}

absl::StatusOr<std::string> Cluster::Reserve(const GuestOptions& o) {
  const core::Resources& cu = options_.compute_unit;
  auto stub = SchedulerStub(scheduler_address(), admin_);
  api::v1::PlaceVmRequest place;
  place.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  place.set_vm(o.name);
  place.mutable_bounds()->set_min_cu(o.bounds.min_cu);
  place.mutable_bounds()->set_max_cu(o.bounds.max_cu);
  place.mutable_compute_unit()->set_milli_cpu(cu.milli_cpu);
  place.mutable_compute_unit()->set_memory_bytes(cu.memory_bytes);
  *place.mutable_initial() = core::ToProto(cu * o.start_cu);
  place.set_migratable(o.migratable);
  place.set_node(o.node);
  api::v1::PlaceVmResponse placed;
  {
    grpc::ClientContext context;
    Deadline(context, absl::Seconds(10));
    RETURN_IF_ERROR(FromGrpc(stub->PlaceVm(&context, place, &placed),
                             "placing " + o.name + " with the scheduler"));
  }
  return placed.node();
}

absl::StatusOr<Guest*> Cluster::AddGuest(const GuestOptions& o) {
  const core::Resources& cu = options_.compute_unit;
  if (cu.memory_bytes % o.memory_slot_bytes != 0) {
    return absl::InvalidArgumentError("the compute unit's memory must be whole memory slots");
  }
  ASSIGN_OR_RETURN(const std::string node, Reserve(o));

  // Its guest: the test image (or the PostgreSQL guest) with the monitor and the load tools,
  // and a boot script that mounts the v1 memory controller and starts the monitor on the work
  // cgroup.
  if (!o.address.empty() && options_.hosts == nullptr) {
    return absl::InvalidArgumentError(o.name + ": a guest address needs ClusterOptions::hosts");
  }
  const std::string gdir = absl::StrCat(dir_, "/", o.name);
  std::filesystem::create_directories(gdir);
  neonvm::guest::GuestImage image;
  std::vector<neonvm::launcher::Disk> disks;
  if (o.postgres) {
    // Its own copy of the data disk, in the cluster's directory; both hosts are this machine, so
    // a migration target opens the same file (shared storage).
    ASSIGN_OR_RETURN(neonvm::launcher::VmSpec pg, PostgresGuestSpec(o.name, gdir));
    image = {pg.kernel, pg.initrd, pg.kernel_cmdline};
    disks = pg.disks;
  } else {
    ASSIGN_OR_RETURN(image, neonvm::guest::FindGuestImage());
  }
  const int slots_per_cu = static_cast<int>(cu.memory_bytes / o.memory_slot_bytes);
  const int64_t start_memory = cu.memory_bytes * o.start_cu;
  // The monitor's certificate (spiffe://.../vm/<name>) goes into the guest's initramfs.
  std::vector<neonvm::guest::GuestFile> files = {{options_.bin.monitor, "/usr/bin/monitor"},
                                                 {options_.bin.loadgen, "/usr/bin/loadgen"},
                                                 {options_.bin.memstep, "/usr/bin/memstep"},
                                                 {gdir + "/run-monitor", "/usr/bin/run-monitor"}};
  RETURN_IF_ERROR(
      SecurityFlags("vm-" + o.name, absl::StrCat(kTrustDomain, "/vm/", o.name)).status());
  std::string monitor_security = "--insecure";
  if (ca_ != nullptr) {
    const std::string base = absl::StrCat(ca_->dir(), "/vm-", o.name);
    files.push_back({base + ".pem", "/etc/autoscale/tls.pem"});
    files.push_back({base + ".key", "/etc/autoscale/tls.key"});
    files.push_back({ca_->ca_file(), "/etc/autoscale/ca.pem"});
    monitor_security =
        "--tls_cert=/etc/autoscale/tls.pem --tls_key=/etc/autoscale/tls.key "
        "--tls_ca=/etc/autoscale/ca.pem";
  }
  RETURN_IF_ERROR(WriteText(
      gdir + "/run-monitor",
      absl::StrCat("#!/bin/sh\nexec /usr/bin/monitor --listen=0.0.0.0:", kMonitorPort, " ",
                   monitor_security, " --cgroup=", kWorkCgroup, " --memory_bytes=", start_memory,
                   " --lfc_resizer=file:/run/lfc_size --metrics_interval=1s --v=1"
                   " >>/var/log/monitor.log 2>&1\n"),
      /*executable=*/true));
  // The guest's clock starts wherever its RTC says; certificates are checked against it, so set
  // it to now (the certificates were issued before).
  const std::string boot = absl::StrCat(
      "date -u -s '", absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::Now(), absl::UTCTimeZone()),
      "' >/dev/null\n",
      // The initramfs gives its files modification time 0, which gRPC's certificate watcher
      // takes for an error.
      ca_ != nullptr ? "touch /etc/autoscale/tls.pem /etc/autoscale/tls.key /etc/autoscale/ca.pem\n"
                     : "",
      "mount -t tmpfs cgroups /sys/fs/cgroup\n"
      "mkdir -p /sys/fs/cgroup/memory\n"
      "mount -t cgroup -o memory memory /sys/fs/cgroup/memory\n"
      "mkdir -p ",
      kWorkCgroup, "\n/usr/bin/run-monitor &\n");
  if (o.postgres) {
    // The PostgreSQL guest has a boot script of its own; it runs this one once PostgreSQL is up.
    RETURN_IF_ERROR(WriteText(gdir + "/boot.local.sh", "#!/bin/sh\n" + boot, true));
    files.push_back({gdir + "/boot.local.sh", "/etc/boot.local.sh"});
    ASSIGN_OR_RETURN(image, neonvm::guest::AddFiles(image, files, "", gdir + "/initrd"));
  } else {
    ASSIGN_OR_RETURN(image, neonvm::guest::AddFiles(image, files, boot, gdir + "/initrd"));
  }
  neonvm::launcher::VmSpec spec;
  spec.name = o.name;
  spec.cpus_min = agent::CpusFor(cu.milli_cpu * o.bounds.min_cu);
  spec.cpus_max = agent::CpusFor(cu.milli_cpu * o.bounds.max_cu);
  spec.cpus_use = agent::CpusFor(cu.milli_cpu * o.start_cu);
  spec.memory_slot_bytes = o.memory_slot_bytes;
  spec.memory_slots_min = slots_per_cu * static_cast<int>(o.bounds.min_cu);
  spec.memory_slots_max = slots_per_cu * static_cast<int>(o.bounds.max_cu);
  spec.memory_slots_use = slots_per_cu * o.start_cu;
  spec.kernel = image.kernel;
  spec.initrd = image.initrd;
  spec.kernel_cmdline = image.cmdline;
  spec.host_forwards = {{.guest_port = kMonitorPort}};
  spec.disks = disks;
  // The VM's agent token, as a launcher makes one: the guest's monitor (through fw_cfg) admits
  // only the agent that presents it (VmConfig.agentTokenFile below).
  spec.agent_token = rpc::monitor::NewAgentToken();
  if (!o.address.empty()) {
    const HostsNetwork::Host* host = NodeHost(node);
    if (host == nullptr) return absl::InternalError(o.name + ": node " + node + " has no host");
    // The same bridge name on every host, so a migration target joins its own host's.
    spec.taps = {{.bridge = host->bridge}};
    spec.kernel_args = {absl::StrCat("autoscale.ip=", o.address, "/", HostsNetwork::kPrefixLength)};
  }

  auto g = std::make_unique<Guest>();
  g->name_ = o.name;
  neonvm::launcher::StartOptions start;
  start.runtime_dir = gdir + "/qemu";  // QEMU's sockets and log stay with the cluster
  start.netns = NodeNetns(node);       // on its node's host, where its agent reaches its ports
  std::filesystem::create_directories(start.runtime_dir);
  const absl::Time boot_start = absl::Now();
  ASSIGN_OR_RETURN(g->vm, neonvm::launcher::Vm::Start(spec, start));
  g->serial_path = g->vm->serial_path();
  ASSIGN_OR_RETURN(g->console, neonvm::guest::GuestConsole::Connect(g->serial_path));
  RETURN_IF_ERROR(g->vm->Resume());
  RETURN_IF_ERROR(Annotate(g->console->WaitFor(neonvm::guest::kReadyMarker, absl::Seconds(120)),
                           "booting " + o.name));
  if (o.postgres) RETURN_IF_ERROR(AwaitPostgres(*g, absl::Seconds(120)));
  g->boot_time_ = absl::Now() - boot_start;
  ASSIGN_OR_RETURN(int port, g->vm->HostPort(kMonitorPort));

  api::v1::VmConfig vm;
  vm.set_name(o.name);
  vm.set_qmp("unix:" + g->vm->agent_qmp_path());
  // The guest booted with its vCPUs' whole quota (a fraction of a CPU would slow the boot under
  // TCG several times over); the agent brings it to the VM's permit when it opens the VM.
  if (g->vm->cgroup() != nullptr) vm.set_host_cgroup(g->vm->cgroup()->path());
  vm.set_monitor_address(absl::StrCat("127.0.0.1:", port));
  vm.set_agent_token_file(
      absl::StrCat(g->vm->runtime_dir(), "/", neonvm::launcher::kAgentTokenFile));
  vm.mutable_bounds()->set_min_cu(o.bounds.min_cu);
  vm.mutable_bounds()->set_max_cu(o.bounds.max_cu);
  *vm.mutable_spec() = agent::SpecToProto(spec);
  vm.set_migratable(o.migratable);
  vm.set_monitor_guest_port(kMonitorPort);
  // Under TCG, precopy can lose a write of a guest that keeps writing memory (neonvm/migration).
  vm.set_allow_postcopy(true);
  node_vms_[node].push_back(vm);
  RETURN_IF_ERROR(WriteAgentConfigs());
  Guest* out = g.get();
  guests_[o.name] = std::move(g);
  return out;
}

absl::Status Cluster::AwaitPostgres(Guest& g, absl::Duration timeout) {
  // The guest's boot script says when pg_ctl saw PostgreSQL accept connections, or that it
  // did not start.
  const absl::Time deadline = absl::Now() + timeout;
  std::string log;
  while (absl::Now() < deadline) {
    ASSIGN_OR_RETURN(log, g.Run("cat /var/log/boot.log 2>/dev/null; true"));
    if (absl::StrContains(log, "postgres is up")) return absl::OkStatus();
    if (absl::StrContains(log, "did not start") || absl::StrContains(log, "boot: no ") ||
        absl::StrContains(log, "boot: cannot")) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  return absl::UnavailableError(
      absl::StrCat(g.name(), ": PostgreSQL did not come up; the guest's boot log:\n", log));
}

Guest* Cluster::guest(const std::string& name) {
  auto it = guests_.find(name);
  return it == guests_.end() ? nullptr : it->second.get();
}

absl::Status Cluster::SetBounds(const std::string& vm, core::Bounds bounds) {
  for (auto& [node, vms] : node_vms_) {
    for (api::v1::VmConfig& c : vms) {
      if (c.name() != vm) continue;
      c.mutable_bounds()->set_min_cu(bounds.min_cu);
      c.mutable_bounds()->set_max_cu(bounds.max_cu);
      return WriteAgentConfigs();
    }
  }
  return absl::NotFoundError("no VM " + vm + " in any agent config");
}

absl::Status Cluster::ReattachGuest(const std::string& vm) {
  Guest* g = guest(vm);
  if (g == nullptr) return absl::NotFoundError("no guest " + vm);
  for (const NodeOptions& n : options_.nodes) {
    absl::StatusOr<api::v1::AgentStatus> status = AgentStatus(n.name);
    if (!status.ok()) continue;
    for (const api::v1::VmStatus& v : status->vms()) {
      if (v.vm() != vm || v.serial().empty()) continue;
      g->console.reset();
      g->vm.reset();  // the source QEMU has exited: reap it
      g->serial_path = v.serial();
      ASSIGN_OR_RETURN(g->console, neonvm::guest::GuestConsole::Connect(g->serial_path));
      // Move the VM's config entry to its new node, as an orchestrator would.
      for (auto& [node, vms] : node_vms_) {
        if (node == n.name) continue;
        for (auto it = vms.begin(); it != vms.end(); ++it) {
          if (it->name() != vm) continue;
          node_vms_[n.name].push_back(*it);
          vms.erase(it);
          return WriteAgentConfigs();
        }
      }
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(vm + ": no agent owns it (has it migrated?)");
}

}  // namespace autoscale::testing
