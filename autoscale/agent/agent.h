// The agent of one node: a Runner for every VM of its config file, the node's registration with
// the scheduler, live migrations in both directions, and what operators look at (a status page
// and Prometheus metrics).
//
//   Agent agent(options, *scheduler_client, connect_monitor, connect_peer);
//   RETURN_IF_ERROR(agent.Start());        // registers the node, starts the runners
//   ... serve it for incoming migrations (rpc::agent_peer::StartGrpcServer(agent, address)) ...
//   agent.Stop();
//
// The config file (an AgentConfig) is re-read when it changes: new VMs get a runner, removed ones
// lose theirs, and changed bounds or scaling configs apply at once. A runner whose VM cannot be
// reached is restarted after a back-off of 5 to 10 seconds without disturbing the others.
//
// Migrations: the scheduler's orders (on a permit, or polled) make the source agent stop
// resizing the VM, ask the target node's agent to start an incoming VM (PrepareIncoming), send
// the VM there over QMP (neonvm/migration), report the result to the scheduler, and tell the
// target (FinishIncoming), which manages the VM from then on. On failure the source keeps
// running and resizing resumes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/agent/events.h"
#include "autoscale/agent/runner.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/rpc/agent_peer/agent_peer.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/migration/migration.h"

namespace autoscale::agent {

// Connects to another node's agent (rpc::agent_peer::NewGrpcClient, or a test's own).
using PeerConnector = std::function<absl::StatusOr<std::unique_ptr<rpc::agent_peer::MigrationPeer>>(
    const std::string& address)>;

struct AgentOptions {
  // The AgentConfig file (.json or .textproto).
  std::string config_path;
  // Where this agent serves incoming migrations ("host:port"), told to the scheduler.
  std::string address;
  absl::Duration config_check_interval = absl::Seconds(2);
  absl::Duration migration_poll_interval = absl::Seconds(1);
  absl::Duration restart_min = absl::Seconds(5);
  absl::Duration restart_max = absl::Seconds(10);
  // Bounds a whole migration.
  absl::Duration migration_timeout = absl::Seconds(120);
  // Overrides for runners (tests shorten the monitor's retry).
  absl::Duration monitor_retry = absl::Seconds(5);
  absl::Duration monitor_health_interval = absl::Seconds(5);
};

// Reads and checks an AgentConfig; errors name the file and the field.
absl::StatusOr<api::AgentConfig> LoadAgentConfig(const std::string& path);

// The migration options of `settings`: zero fields take MigrationOptions' defaults; errors name
// the field.
absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFromProto(
    const api::MigrationSettings& settings);

class Agent final : public rpc::agent_peer::MigrationPeer {
 public:
  Agent(AgentOptions options, rpc::scheduler::SchedulerService& scheduler,
        MonitorConnector connect_monitor, PeerConnector connect_peer, Clock& clock = Clock::Real());
  ~Agent() override;

  // Reads the config, registers the node with the scheduler, starts the runners and the
  // supervisor thread. A VM that cannot be reached now is retried in the background.
  absl::Status Start();
  void Stop();

  // {"node":..., "vms":[{...}], "events":[{...}]} with events after `since`.
  std::string StatusJson(uint64_t since = 0) const;
  std::string MetricsText() const { return metrics_.Render(); }
  EventLog& events() { return events_; }
  std::vector<RunnerStatus> Statuses() const;

  // MigrationPeer: this agent as a migration target.
  absl::StatusOr<api::PrepareIncomingResponse> PrepareIncoming(
      const api::PrepareIncomingRequest& request) override;
  absl::Status FinishIncoming(const api::FinishIncomingRequest& request) override;

 private:
  struct Managed {
    api::VmConfig config;
    std::unique_ptr<Runner> runner;  // null while (re)starting
    absl::Time restart_at;           // when to try again
    std::string last_error;
    // The QEMU this agent started for the VM (after an incoming migration), if any.
    std::unique_ptr<neonvm::launcher::Vm> owned;
    // A migration away is in progress: the supervisor leaves the runner alone.
    bool migrating = false;
  };
  struct Incoming {
    api::VmConfig config;
    core::Resources current;
    std::unique_ptr<neonvm::launcher::Vm> vm;
  };

  absl::StatusOr<std::unique_ptr<Runner>> MakeRunner(const api::VmConfig& config,
                                                     const std::string& qmp_address,
                                                     const std::string& monitor_address);
  absl::Status ApplyConfig(const api::AgentConfig& config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Supervise();
  void StartDueRunners() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnMigrationOrder(const api::MigrationOrder& order);
  void Migrate(api::MigrationOrder order);
  void Event(const std::string& vm, const std::string& kind, const std::string& text) {
    events_.Add(clock_.Now(), vm, kind, text);
  }

  const AgentOptions options_;
  rpc::scheduler::SchedulerService& scheduler_;
  const MonitorConnector connect_monitor_;
  const PeerConnector connect_peer_;
  Clock& clock_;
  EventLog events_;
  mutable Metrics metrics_;

  // Guards the config, the VMs and the migrations in progress.
  mutable absl::Mutex mu_;
  api::AgentConfig config_ ABSL_GUARDED_BY(mu_);
  std::string config_text_ ABSL_GUARDED_BY(mu_);
  core::Resources compute_unit_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Managed> vms_ ABSL_GUARDED_BY(mu_);
  // VMs that migrated away (still in the config file, no longer here).
  std::set<std::string> departed_ ABSL_GUARDED_BY(mu_);
  // Migration orders being carried out (by order id), and incoming VMs not finished yet.
  std::set<uint64_t> migrating_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Incoming> incoming_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> migrations_ ABSL_GUARDED_BY(mu_);
  std::thread supervisor_;
};

}  // namespace autoscale::agent
