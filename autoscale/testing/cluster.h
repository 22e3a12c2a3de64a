// A whole autoscaling cluster on one machine, for the demo and the end-to-end tests: the
// scheduler daemon, one agent daemon per node, and booted test guests (QEMU under this process)
// that run the monitor and a load generator. Everything is a real process; everything is stopped
// and removed when the Cluster is destroyed (and dies with this process).
//
//   // The binaries come from the caller's data: //examples/demo:cluster_binaries.
//   ASSIGN_OR_RETURN(Binaries bin, FindBinaries());
//   ASSIGN_OR_RETURN(std::unique_ptr<Cluster> cluster,
//                    Cluster::Start({.bin = bin, .nodes = {{"a", {4000, 1 << 30}}}}));
//   ASSIGN_OR_RETURN(Guest* g, cluster->AddGuest({.name = "vm1", .node = "a"}));
//   RETURN_IF_ERROR(g->AddLoad(/*memory_mib=*/200, /*cpu_threads=*/1));
//   ... cluster->AgentStatus("a") ...
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/agent_status.pb.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/api/scheduler.pb.h"
#include "autoscale/core/resources.h"
#include "autoscale/rpc/tls.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/hosts_network.h"
#include "autoscale/testing/test_ca.h"
#include "neonvm/guest/console.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::testing {

// The programs the cluster runs.
struct Binaries {
  std::string scheduler;
  std::string agent;
  std::string monitor;
  std::string loadgen;
  std::string memstep;
};

// Finds them in Bazel's runfiles (tests, `bazel run`) or under bazel-bin (scripts).
absl::StatusOr<Binaries> FindBinaries();

struct NodeOptions {
  std::string name;
  core::Resources total;
  double watermark = 0.9;
};

struct ClusterOptions {
  Binaries bin;
  core::Resources compute_unit{1000, int64_t{512} << 20};
  std::vector<NodeOptions> nodes;
  // Defaults for every VM's scaling.
  api::v1::ScalingConfig scaling;
  absl::Duration balance_interval = absl::Seconds(1);
  // Where everything goes; empty: a new directory under /tmp, removed at the end.
  std::string dir;
  // Echo the daemons' logs to stderr (for debugging).
  bool verbose = false;
  // Mutual TLS on every link (a throwaway CA made with openssl under dir/pki: the scheduler,
  // each node's agent, each VM's monitor and the cluster's own admin calls have certificates);
  // false: every daemon runs --insecure.
  bool tls = true;
  // Node i (in `nodes` order) is host(i) of this network: its agent, and so the QEMUs the agent
  // starts as migration targets, run in that host's namespace, as does each guest placed there;
  // a guest with an `address` has a tap on the host's bridge. The targets listen on their host's
  // address (the agent's --migration_address), so a migration stream goes over TCP from one
  // host to the other. Null: everything runs in this process's namespace (streams over unix
  // sockets). Not owned; outlives the cluster.
  HostsNetwork* hosts = nullptr;
};

struct GuestOptions {
  std::string name;
  // Where to place it; empty: the scheduler chooses.
  std::string node;
  core::Bounds bounds{1, 4};
  int start_cu = 1;
  bool migratable = true;
  int64_t memory_slot_bytes = int64_t{256} << 20;
  // The PostgreSQL guest (neonvm/guest/build --postgres, its own copy of the data disk) instead
  // of the test guest; PostgreSQL starts in the background after the guest is ready.
  bool postgres = false;
  // With ClusterOptions::hosts: the guest's own address on the segment (on a tap; the
  // PostgreSQL guest takes it from its kernel command line), kept wherever it migrates.
  std::string address{};
};

class Cluster;

// What the load generators of a guest said when stopped.
struct LoadReport {
  // Their final lines ("loadgen: ... verified ..." when the memory each wrote was intact; none for
  // one that was killed).
  std::vector<std::string> lines;
  // How many were started (AddLoad) since the last StopLoad.
  int started = 0;
  // Every one started reported its memory intact (and at least one was started).
  bool AllVerified() const;
};

// A booted test guest with the monitor (watching the cgroup /sys/fs/cgroup/memory/work) and the
// load tools in it.
class Guest {
 public:
  const std::string& name() const { return name_; }
  // Runs a shell command in the guest (through its serial console).
  absl::StatusOr<std::string> Run(const std::string& command,
                                  absl::Duration timeout = absl::Seconds(30));
  absl::StatusOr<int64_t> MemTotalBytes();
  absl::StatusOr<int> OnlineCpus();
  // Starts one more load generator in the watched cgroup (on top of those running): `memory_mib`
  // rewritten continuously and `cpu_threads` busy threads.
  absl::Status AddLoad(int memory_mib, int cpu_threads);
  // Stops them all and returns what they said.
  absl::StatusOr<LoadReport> StopLoad();
  // memstep: fill to just below the monitor's threshold, cross it, and report when more memory
  // came online (the line memstep prints). Stops it afterwards, so the memory is freed.
  absl::StatusOr<std::string> MeasureReaction(absl::Duration timeout = absl::Seconds(20));
  absl::Status KillMonitor();
  absl::Status StartMonitor();
  // From QEMU's start to the guest's shell (the PostgreSQL guest: to PostgreSQL accepting
  // connections).
  absl::Duration boot_time() const { return boot_time_; }
  // The LFC size the monitor last set (its file resizer), in bytes.
  absl::StatusOr<int64_t> LfcBytes();
  // The monitor's log.
  absl::StatusOr<std::string> MonitorLog();
  // The QMP connection of the QEMU the cluster started for it, for watching its events (a
  // migration's phases, with QEMU's timestamps); null once it has migrated and been reattached.
  neonvm::qmp::QmpClient* qmp() { return vm ? &vm->qmp() : nullptr; }

 private:
  friend class Cluster;
  std::string name_;
  std::unique_ptr<neonvm::launcher::Vm> vm;  // null once migrated (the target agent owns it)
  std::unique_ptr<neonvm::guest::GuestConsole> console;
  std::string serial_path;
  int loads_started_ = 0;
  absl::Duration boot_time_;
};

class Cluster {
 public:
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(ClusterOptions options);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Places the VM with the scheduler, boots its guest and hands it to its node's agent.
  absl::StatusOr<Guest*> AddGuest(const GuestOptions& options);
  // Only places the VM with the scheduler (its node reserves it; nothing boots): stands for a VM
  // whose guest runs elsewhere, so a node can be filled without more QEMU processes. Returns the
  // node.
  absl::StatusOr<std::string> Reserve(const GuestOptions& options);
  Guest* guest(const std::string& name);

  // The port of a node's agent HTTP server (/status, /metrics) on 127.0.0.1.
  int AgentHttpPort(const std::string& node) const;
  // A node's agent /status (events after `since`), parsed.
  absl::StatusOr<api::v1::AgentStatus> AgentStatus(const std::string& node, uint64_t since = 0);
  absl::StatusOr<api::v1::ListVmsResponse> SchedulerVms();
  absl::StatusOr<api::v1::ListNodesResponse> SchedulerNodes();

  absl::Status KillScheduler();
  absl::Status StartScheduler();
  absl::Status KillAgent(const std::string& node);
  absl::Status StartAgent(const std::string& node);
  // Rewrites the VM's bounds in its node's agent config (the agent re-reads it).
  absl::Status SetBounds(const std::string& vm, core::Bounds bounds);
  // After a migration: finds the VM's new serial console through the agent that owns it now, and
  // moves its config entry to that node (so SetBounds reaches it there).
  absl::Status ReattachGuest(const std::string& vm);

  const std::string& dir() const { return dir_; }
  const ClusterOptions& options() const { return options_; }
  // The network namespace (/run/netns/NAME) of a node's host; empty without hosts.
  std::string NodeNetns(const std::string& node) const;
  std::string scheduler_address() const { return "unix:" + dir_ + "/scheduler.sock"; }
  // What a client of the scheduler with admin rights uses (mutual TLS, or plaintext).
  const rpc::Security& admin_security() const { return admin_; }
  // A client's mutual TLS with a certificate of the cluster's CA for `uri` (written to the CA's
  // directory as `file`): for tests that attack. FailedPrecondition without TLS.
  absl::StatusOr<rpc::Security> ClientSecurity(const std::string& file, const std::string& uri);

 private:
  explicit Cluster(ClusterOptions options) : options_(std::move(options)) {}
  // A node's agent config: its VMs, and every other node's as the VMs it may receive.
  absl::Status WriteAgentConfig(const std::string& node);
  absl::Status WriteAgentConfigs();
  // The TLS flags of a daemon with the certificate `file` for `uri` (made on first use), or
  // --insecure.
  absl::StatusOr<std::vector<std::string>> SecurityFlags(const std::string& file,
                                                         const std::string& uri);

  std::string AgentAddress(const std::string& node) const;
  // The host of a node (ClusterOptions::hosts), or null.
  const HostsNetwork::Host* NodeHost(const std::string& node) const;
  absl::Status AwaitPostgres(Guest& g, absl::Duration timeout);

  ClusterOptions options_;
  std::string dir_;
  bool own_dir_ = false;
  std::unique_ptr<Daemon> scheduler_;
  // With TLS: the CA, and the admin certificate the cluster's own scheduler calls use.
  std::unique_ptr<TestCa> ca_;
  rpc::Security admin_ = rpc::Security::Plaintext();
  std::map<std::string, std::unique_ptr<Daemon>> agents_;
  std::map<std::string, int> agent_http_ports_;
  // Each node's VMs as its agent config lists them.
  std::map<std::string, std::vector<api::v1::VmConfig>> node_vms_;
  std::map<std::string, std::unique_ptr<Guest>> guests_;
};

}  // namespace autoscale::testing
