// The agent of one node: a Runner for every VM of its config, the node's registration with the
// scheduler, live migrations in both directions, and what operators look at (a status document
// and Prometheus metrics).
//
//   std::unique_ptr<VmDriverFactory> vms = NewQemuVmDriverFactory();
//   Agent agent(options, *scheduler_client, *vms, connect_monitor, connect_peer);
//   RETURN_IF_ERROR(agent.Start(config));  // registers the node, starts the runners
//   ConfigFileWatcher watcher(agent, "/etc/autoscale/agent.json");  // later configs, if wanted
//   ... serve it for incoming migrations (rpc::agent_peer::StartGrpcServer(agent, address)) ...
//   agent.Stop();
//
// Configs come from code (Start, UpdateConfig); a file is one source of them (ConfigFileWatcher).
// On a new config, new VMs get a runner, removed ones lose theirs, and changed bounds, scaling
// configs and timings apply to the running runners at once. What the scheduler must know follows
// the config: a VM's bounds (UpdateVmBounds, once its runner holds a permit and whenever they
// change) and the node's total and watermark (the node is registered again); a call the scheduler
// does not take is retried after `restart_min`. The compute unit cannot change while VMs are
// managed: the scheduler books each VM in whole units of the one it was placed with. A runner whose
// VM cannot be reached is restarted after a back-off of `restart_min` to `restart_max` without
// disturbing the others.
//
// Migrations: the scheduler's orders (on a permit, or polled) make the source agent stop
// resizing the VM, ask the target node's agent to start an incoming VM (PrepareIncoming), and run
// the migration's state machine (neonvm/migration/outgoing.h) over the VM's migration Source and
// the target agent (FinishIncoming), which keeps exactly one copy running: the outcome is
// migrated (the target agent manages the VM; the source QEMU quit), stayed (the source runs it
// again if it ran before; resizing resumes) or lost (after the point of no return; the source is
// left paused and unmanaged). Every outcome is reported to the scheduler, retried until it is
// taken. A migration this agent finds in progress on its VM (it restarted in the middle of one) is
// taken up where QEMU has it. Each migration's thread is joined when it ends.
//
// Everything that waits reads `clock`: tests run the agent on a ManualClock (restart back-offs,
// order polling, timers of the runners' states) with a fake VmDriverFactory, an in-process
// scheduler and in-process monitors.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/agent/agent_config.h"
#include "autoscale/agent/events.h"
#include "autoscale/agent/runner.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/api/agent_status.pb.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/rpc/agent_peer/agent_peer.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "neonvm/migration/outgoing.h"

namespace autoscale::agent {

// Connects to node `node`'s agent at `address` (rpc::agent_peer::NewGrpcClient, or a test's own).
// With TLS, the connection must reach that node's agent and no other (the source hands the
// target its VM).
using PeerConnector = std::function<absl::StatusOr<std::unique_ptr<rpc::agent_peer::MigrationPeer>>(
    const std::string& address, const std::string& node)>;

struct AgentOptions {
  // Where this agent serves incoming migrations ("host:port"), told to the scheduler.
  std::string address;
  // How often the supervisor looks at the runners (real time; it reads `clock` for the
  // back-offs), and how often it asks the scheduler for migration orders (`clock` time).
  absl::Duration supervise_interval = absl::Milliseconds(200);
  absl::Duration migration_poll_interval = absl::Seconds(1);
  absl::Duration restart_min = absl::Seconds(5);
  absl::Duration restart_max = absl::Seconds(10);
  // Bounds a migration's precopy (after the point of no return nothing is timed out), and how
  // what must be asked again then is retried.
  absl::Duration migration_timeout = absl::Seconds(120);
  neonvm::migration::RetryOptions migration_retry;
  // Bounds the target's wait for the migrated VM to arrive and run.
  absl::Duration incoming_timeout = absl::Seconds(60);
  // QEMU's TLS on the streams of migrations away (neonvm::migration::MakeTlsDir of this node's
  // certificate); empty: plaintext. The target's certificate must carry the name
  // "node-<target>" (its CN, or a DNS SAN).
  std::string migration_tls_dir;
  // Calls through ForCaller must come from the order's source node: its identity
  // (spiffe://<td>/node/<source>) as the transport authenticated it. Set with TLS.
  bool require_peer_identity = false;
  // With require_peer_identity, the trust domain that identity must be of ("": any).
  std::string trust_domain;
  // Overrides for runners (tests shorten the monitor's retry and the loops' sleeps).
  absl::Duration monitor_retry = absl::Seconds(5);
  absl::Duration monitor_health_interval = absl::Seconds(5);
  absl::Duration runner_max_sleep = absl::Seconds(1);
};

class Agent final : public rpc::agent_peer::MigrationPeer {
 public:
  // `scheduler`, `vms` and `clock` must outlive the agent.
  Agent(AgentOptions options, rpc::scheduler::SchedulerService& scheduler, VmDriverFactory& vms,
        MonitorConnector connect_monitor, PeerConnector connect_peer, Clock& clock = Clock::Real());
  ~Agent() override;

  // Checks and applies `config`, registers the node with the scheduler, starts the runners and
  // the supervisor thread. A VM that cannot be reached now is retried in the background; a node
  // the scheduler cannot register now is registered again until it is.
  absl::Status Start(const api::v1::AgentConfig& config);
  // A new config (from code, or ConfigFileWatcher): checked (an error leaves the old one in
  // place, and says why in the event log too), then applied. The node's name cannot change.
  absl::Status UpdateConfig(const api::v1::AgentConfig& config);
  // Stops the runners and waits for migrations in progress. Idempotent.
  void Stop();

  // The status document: the node, its VMs, and the events after `since`.
  api::v1::AgentStatus Status(uint64_t since = 0) const;
  // The same in the proto3 JSON form (what the /status page serves).
  std::string StatusJson(uint64_t since = 0) const;
  std::string MetricsText() const { return metrics_.Render(); }
  EventLog& events() { return events_; }
  std::vector<RunnerStatus> Statuses() const;

  // MigrationPeer: this agent as a migration target. PrepareIncoming starts a QEMU only for an
  // order the scheduler issued to this node, of a VM its config lists (incomingVms, or vms), from
  // that config: the source's spec is not used, its sizes are checked (CheckIncoming). A refused
  // one starts nothing and is logged (EVENT_KIND_INCOMING_REFUSED). FinishIncoming answers as
  // api::v1::FinishIncomingRequest says, the same when asked again.
  absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
      const api::v1::PrepareIncomingRequest& request) override;
  absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& request) override;
  // This agent as a migration target for the caller of `identity` (rpc::agent_peer::PeerFor):
  // with require_peer_identity, a call for an order whose source is another node than the
  // identity's is PERMISSION_DENIED (a node cannot prepare, finish or abandon another's
  // migration). The agent must outlive what it returns.
  std::shared_ptr<rpc::agent_peer::MigrationPeer> ForCaller(const std::string& identity);

  // Migration threads not joined yet (those running and those just ended).
  size_t migration_threads() const;

 private:
  struct Managed {
    api::v1::VmConfig config;
    std::unique_ptr<Runner> runner;  // null while (re)starting
    // The VM as a migration source: opened with the runner's driver.
    std::unique_ptr<neonvm::migration::Source> migration;
    absl::Time restart_at = absl::InfinitePast();  // when to try again
    std::string last_error;
    // What the supervisor must do: nothing, drop the VM (it left the config), or restart its
    // runner (its addresses changed).
    enum class Pending { kNone, kRemove, kRestart } pending = Pending::kNone;
    // The QEMU this agent started for the VM (after an incoming migration), if any.
    std::unique_ptr<IncomingVm> owned;
    // A migration away is in progress: the supervisor leaves the runner alone.
    bool migrating = false;
    // Lost in a migration: not managed any more (its source QEMU is left paused).
    bool lost = false;
    // The bounds the scheduler last took for the VM (none yet: they are sent), when to try
    // again after it refused them, and why it did.
    std::optional<core::Bounds> bounds_sent;
    absl::Time bounds_retry_at = absl::InfinitePast();
    std::string bounds_error;
  };
  struct Incoming {
    api::v1::VmConfig config;
    std::string source_node;  // the order's
    std::unique_ptr<IncomingVm> vm;
    // A FinishIncoming for it is being answered.
    bool finishing = false;
  };
  // How an incoming migration ended here: the VM taken over, or its copy stopped.
  struct Finished {
    bool taken_over = false;
    std::string why;
    std::string source_node;
  };
  class Caller;
  // PrepareIncoming and FinishIncoming for a caller of the node `caller` (nullopt: a caller in
  // this process, not checked).
  absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncomingFrom(
      const std::optional<std::string>& caller, const api::v1::PrepareIncomingRequest& request);
  absl::Status FinishIncomingFrom(const std::optional<std::string>& caller,
                                  const api::v1::FinishIncomingRequest& request);

  // A runner for `vm` (and its migration source), started.
  absl::Status StartRunner(const api::v1::VmConfig& vm, std::unique_ptr<Runner>& runner,
                           std::unique_ptr<neonvm::migration::Source>& migration);
  absl::Status ApplyConfig(const api::v1::AgentConfig& config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives m's runner its bounds, scaling config and timings from the config.
  absl::Status UpdateRunner(Managed& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SupervisorLoop();
  // Registers the node (again) with the config's total and watermark; whether it was taken.
  bool RegisterNode();
  // Whether the scheduler holds the node as the config has it.
  bool NodeRegistered() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Supervise();
  // Stops the incoming QEMUs whose order the scheduler has ended (expired: their source died
  // between PrepareIncoming and FinishIncoming) while their state never arrived.
  void SweepIncoming();
  // Ends incoming `id`, claimed (Incoming::finishing), as not taken over: its QEMU stops, and
  // `why` is logged and is what its source hears if it asks again.
  void DropIncoming(uint64_t id, const std::string& why);
  // Sends the bounds of `vms` (claimed by Supervise) to the scheduler.
  void SendBounds(const std::vector<std::pair<std::string, core::Bounds>>& vms);
  void OnMigrationOrder(const api::v1::MigrationOrder& order);
  void Migrate(api::v1::MigrationOrder order);
  // The milli-CPU the ledger grants `vm` on `node` (0: not known): a restarted runner reads its
  // VM's partial vCPU as granted, not as a whole one.
  int64_t GrantedMilliCpu(const std::string& node, const std::string& vm);
  // An incoming migration as this node accepts it: for an order the scheduler issued to this node,
  // of a VM its config lists, built from that config (never from the source's spec) with the
  // source's sizes within the VM's bounds and spec. Errors: PERMISSION_DENIED (no such order, a
  // VM not configured here, a `caller` that is not the order's source node), INVALID_ARGUMENT
  // (sizes), UNAVAILABLE (the scheduler cannot be asked).
  struct CheckedIncoming {
    api::v1::PrepareIncomingRequest request;
    std::string source_node;  // the order's
  };
  absl::StatusOr<CheckedIncoming> CheckIncoming(const std::optional<std::string>& caller,
                                                const api::v1::PrepareIncomingRequest& request);
  // Reports a migration's end to the scheduler, again until it is taken (or refused for good, or
  // the agent stops).
  void Report(const api::v1::MigrationResult& result);
  // The incoming VM of `order` runs here now: this agent manages it.
  absl::Status TakeOver(uint64_t order, Incoming in);
  bool stopping() const {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }
  void Event(const std::string& vm, api::v1::EventKind kind, const std::string& text,
             std::optional<absl::Duration> duration = std::nullopt) {
    events_.Add(clock_.Now(), vm, kind, text, duration);
  }

  const AgentOptions options_;
  rpc::scheduler::SchedulerService& scheduler_;
  VmDriverFactory& vms_factory_;
  const MonitorConnector connect_monitor_;
  const PeerConnector connect_peer_;
  Clock& clock_;
  EventLog events_;
  mutable Metrics metrics_;

  // Guards the config, the VMs and the migrations in progress.
  mutable absl::Mutex mu_;
  api::v1::AgentConfig config_ ABSL_GUARDED_BY(mu_);
  core::Resources compute_unit_ ABSL_GUARDED_BY(mu_);
  // The node as the scheduler last took it (RegisterNode): total and watermark.
  std::optional<std::pair<api::v1::Resources, double>> registered_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Managed> vms_ ABSL_GUARDED_BY(mu_);
  // VMs that migrated away (still in the config, no longer here).
  std::set<std::string> departed_ ABSL_GUARDED_BY(mu_);
  // Migration orders being carried out (by order id), and incoming VMs not finished yet.
  std::set<uint64_t> migrating_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Incoming> incoming_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Finished> finished_incoming_ ABSL_GUARDED_BY(mu_);
  // Incoming migrations whose QEMU is being started, with their source node.
  std::map<uint64_t, std::string> preparing_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The threads of migrations away, by order; a thread that ends moves itself to `ended_`, which
  // the supervisor joins.
  std::map<uint64_t, std::thread> migrations_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> ended_ ABSL_GUARDED_BY(mu_);
  std::thread supervisor_;
};

// Re-reads an AgentConfig file every `interval` and gives the agent each changed version
// (Agent::UpdateConfig); a file that cannot be read or checked leaves the config as it is and
// says why in the agent's event log. The file as it is at construction counts as applied (the
// agent was started with it). Stops with its destruction.
class ConfigFileWatcher {
 public:
  ConfigFileWatcher(Agent& agent, std::string path, absl::Duration interval = absl::Seconds(2));
  ~ConfigFileWatcher();
  ConfigFileWatcher(const ConfigFileWatcher&) = delete;
  ConfigFileWatcher& operator=(const ConfigFileWatcher&) = delete;

  // Reads the file now and applies it if it changed (what the thread does every interval).
  void CheckNow();

 private:
  Agent& agent_;
  const std::string path_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  std::string last_text_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace autoscale::agent
