// One VM's runner in the agent: a core::State and the executors that carry out its actions
// against the scheduler (rpc::scheduler::SchedulerService), the VM (VmDriver) and the in-VM monitor
// (MonitorClient, whose stream also brings the metrics).
//
// It is the threaded driver of autoscale/core/executor.h, so it reads an ActionSet as the
// simulator does: a loop thread takes the state's advice (core::Advise) and hands the operation
// to the executor thread of its kind; the executor starts it only if the state has not changed
// since (core::Start; otherwise the loop advises afresh), carries it out without the lock, and
// feeds the result back (core::Finish), which wakes the loop. One more thread keeps the monitor
// connection: it reconnects when the stream ends or health checks keep failing.
//
//   Runner runner(options, std::move(driver), scheduler, connect_monitor, events, metrics, clock);
//   RETURN_IF_ERROR(runner.Start());
//   ...
//   runner.Stop();
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/agent/events.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/api/monitor.pb.h"
#include "autoscale/api/scheduler.pb.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/state.h"
#include "autoscale/rpc/monitor/monitor.h"
#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::agent {

// Connects to a monitor (rpc::monitor::ConnectGrpc, an rpc::monitor::InProcessConnector, or a
// test's own).
using MonitorConnector = std::function<absl::StatusOr<std::unique_ptr<rpc::monitor::MonitorClient>>(
    const std::string& address, const rpc::monitor::AgentBinding& binding,
    rpc::monitor::MonitorClient::Callbacks callbacks, absl::Duration timeout)>;

struct RunnerOptions {
  std::string node;
  std::string vm;
  // The compute unit, scaling config and timers; Update changes the last two.
  core::StateConfig state;
  core::Bounds bounds;
  // The monitor's address ("host:port"); empty: the VM has none.
  std::string monitor_address;
  // The VM's agent token (VmConfig.agent_token_file's contents), presented to the monitor; empty:
  // none. The monitor's identity is checked against `vm` (rpc::monitor::AgentBinding).
  std::string agent_token;
  absl::Duration monitor_health_interval = absl::Seconds(5);
  // Health checks failing for this long end the connection (it is made again).
  absl::Duration monitor_unhealthy_after = absl::Seconds(30);
  // At least this long between connection attempts.
  absl::Duration monitor_retry = absl::Seconds(5);
  absl::Duration monitor_connect_timeout = absl::Seconds(4);
  // The longest the loop waits without a timer or a change (it also refreshes the metrics), and
  // how often an idle VM executor asks the VM its size. Tests on a manual clock shorten them, so
  // that time moved forward is seen soon.
  absl::Duration max_sleep = absl::Seconds(1);
  absl::Duration probe_interval = absl::Seconds(1);
  // Called (outside the runner's lock) when a permit carries a migration order for this VM.
  std::function<void(const api::v1::MigrationOrder&)> on_migration_order;
};

// A snapshot for the status page, the metrics and the demo's table.
struct RunnerStatus {
  std::string vm;
  core::Resources current;
  // What the VM itself last reported (asked every second while no resize runs); empty when it
  // could not be asked.
  std::optional<core::Resources> observed;
  std::optional<core::Resources> permit;
  core::Desired desired;
  bool monitor_connected = false;
  bool migrating = false;
  bool metrics_stale = false;
  std::optional<api::v1::Metrics> metrics;
  int64_t upscale_requests = 0;
};

class Runner {
 public:
  Runner(RunnerOptions options, std::unique_ptr<VmDriver> driver,
         rpc::scheduler::SchedulerService& scheduler, MonitorConnector connect_monitor,
         EventLog& events, Metrics& metrics, Clock& clock);
  // Stops the threads.
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Reads the VM's size and starts the threads. The state starts with no metrics and no
  // monitor, so the VM is not shrunk until both are back (an agent restart flushes nothing).
  absl::Status Start();
  void Stop();

  RunnerStatus Status() const;
  const std::string& vm() const { return options_.vm; }
  // The VM's agent token ("" for none): it goes with the VM to a migration target.
  const std::string& agent_token() const { return options_.agent_token; }

  // New bounds, scaling config or timers (the agent's config changed). The compute unit cannot
  // change: the scheduler books the VM in whole units of the one it was placed with.
  void Update(core::Bounds bounds, const core::ScalingConfig& scaling,
              const core::Timings& timings);

  // Stops resizing for a migration and waits (up to `timeout`) for a resize in flight to end.
  absl::Status BeginMigration(absl::Duration timeout);
  void EndMigration();

  // Set when the VM can no longer be reached (its QMP connection is gone): the agent restarts
  // the runner. Empty while healthy.
  std::string failure() const;

 private:
  void Loop();
  void SchedulerExecutor();
  // The scheduler's answer to `request`, waited for up to the timings' scheduler request
  // timeout (clock time): DEADLINE_EXCEEDED after it, CANCELLED if the runner stops first.
  absl::StatusOr<api::v1::PermitResponse> AskScheduler(const api::v1::PermitRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);
  void VmExecutor();
  void ProbeVm() ABSL_LOCKS_EXCLUDED(mu_);
  void MonitorExecutor();
  void MonitorConnection();
  rpc::monitor::MonitorClient::Callbacks MonitorCallbacks(uint64_t generation);
  // Whether to wake: the state changed since `generation`, or the runner stops.
  bool ChangedSince(uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Event(api::v1::EventKind kind, const std::string& text,
             std::optional<absl::Duration> duration = std::nullopt);
  // Waits for the next operation in `slot` (a member guarded by mu_, named so that it is only
  // touched under the lock) and starts it; false when the runner stops. `usable` says whether
  // the executor can carry the operation out now (the monitor executor: a monitor is connected);
  // advice it cannot use is dropped, and the loop advises again.
  bool NextOperation(std::optional<core::Operation> Runner::*slot, core::Operation& op,
                     const std::function<bool()>& usable = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  void PublishMetrics() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Metrics::Labels Vm() const { return {{"vm", options_.vm}}; }

  const RunnerOptions options_;
  std::unique_ptr<VmDriver> driver_;
  rpc::scheduler::SchedulerService& scheduler_;
  const MonitorConnector connect_monitor_;
  EventLog& events_;
  Metrics& metrics_;
  Clock& clock_;

  // Guards the state and what the threads hand each other.
  mutable absl::Mutex mu_;
  std::optional<core::State> state_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Advice for the executors, one slot per executor (the monitor's takes both kinds).
  std::optional<core::Operation> scheduler_work_ ABSL_GUARDED_BY(mu_);
  std::optional<core::Operation> vm_work_ ABSL_GUARDED_BY(mu_);
  std::optional<core::Operation> monitor_work_ ABSL_GUARDED_BY(mu_);
  // The connected monitor, if any.
  std::shared_ptr<rpc::monitor::MonitorClient> monitor_ ABSL_GUARDED_BY(mu_);
  // Monitor connections are numbered: the latest attempt's number, the number of the one the
  // state knows as connected (0: none), and whether the latest one ended.
  uint64_t monitor_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t connected_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool monitor_closed_ ABSL_GUARDED_BY(mu_) = false;
  // An upscale request that came with the connection, before the state knew of it.
  std::optional<absl::Time> early_upscale_ ABSL_GUARDED_BY(mu_);
  std::optional<api::v1::Metrics> last_metrics_ ABSL_GUARDED_BY(mu_);
  std::optional<core::Resources> observed_ ABSL_GUARDED_BY(mu_);
  int64_t upscale_requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::string failure_ ABSL_GUARDED_BY(mu_);

  std::vector<std::thread> threads_;
};

}  // namespace autoscale::agent
