// Fake VMs for agent tests without QEMU: what autoscale/agent's VmDriverFactory, VmDriver,
// migration Source and IncomingVm reach, simulated in memory. One FakeHypervisor holds every VM
// of a test, across the test's agents (so a migration from one agent's VM reaches the other
// agent's incoming VM), and answers what a test asserts: where each VM runs, and how many
// running copies of a VM there are.
//
//   FakeHypervisor hv;
//   FakeVm& vm1 = hv.AddVm("vm1", "fake:vm1", {1000, kGiB});  // a VM that runs already
//   FakeVmDriverFactory node_a(hv, "a"), node_b(hv, "b");      // one per agent
//   agent::Agent a(options, scheduler, node_a, ...);           // vm1's config: qmp "fake:vm1"
//   ...
//   vm1.SetReachable(false);                                   // its QMP connection is lost
//   EXPECT_EQ(hv.RunningCopies("vm1"), 1);
//
// A migration moves on each Query of its source: `setup`, then `active` for
// `MigrationScript::active_polls` polls (a pass each), then `completed` (the target gets the
// source's size and runs if the source ran; the source is left in "postmigrate"), unless the
// script makes it fail. Resizes reach their target at once unless told to fail.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/core/resources.h"

namespace autoscale::testing {

class FakeHypervisor;

// One fake QEMU. Thread-safe (its state is under the hypervisor's lock).
class FakeVm {
 public:
  const std::string& name() const { return name_; }
  const std::string& qmp_address() const { return qmp_address_; }
  core::Resources size() const;
  // QEMU's run state: "running", "paused", "inmigrate", "postmigrate", or "shutdown" (quit or
  // stopped: gone).
  std::string run_state() const;
  // How many resizes it was asked for; the postcopy switches and cancels its migrations saw.
  int resizes() const;
  int postcopy_switches() const;
  int cancels() const;
  // QEMU's query-migrate status of its outgoing migration ("none" before any).
  std::string migration_status() const;

  // While false, every call on it fails as on a lost QMP connection (Unavailable), and opening
  // it fails.
  void SetReachable(bool reachable);
  // Resizes fail with `error` (OK: they succeed again).
  void FailResizes(absl::Status error);
  // Ends it, as a killed QEMU.
  void Kill();

 private:
  friend class FakeHypervisor;
  friend class FakeConnection;
  friend class FakeSource;
  friend class FakeDriver;
  friend class FakeIncoming;
  friend class FakeVmDriverFactory;
  FakeVm(FakeHypervisor& hv, std::string name, std::string qmp_address, core::Resources size,
         std::string run_state)
      : hv_(hv),
        name_(std::move(name)),
        qmp_address_(std::move(qmp_address)),
        size_(size),
        run_state_(std::move(run_state)) {}

  FakeHypervisor& hv_;
  const std::string name_;
  const std::string qmp_address_;
  // Under hv_.mu_:
  core::Resources size_;
  std::string run_state_;
  bool reachable_ = true;
  // Bumped when the VM becomes unreachable: connections opened before stay lost.
  int epoch_ = 0;
  absl::Status resize_error_;
  int resizes_ = 0;
  int postcopy_switches_ = 0;
  int cancels_ = 0;
  std::string uri_;  // incoming: where it listens
  // Outgoing migration, when one runs: its target, how far it got, how it was started.
  FakeVm* target_ = nullptr;
  std::string migration_status_ = "none";
  int polls_ = 0;
  int postcopy_polls_ = 0;
  int query_timeouts_ = 0;
  bool ran_ = false;  // the source ran when the migration started
  bool postcopy_allowed_ = false;
};

// How fake migrations go, as QEMU 10 goes: the source runs during precopy (and runs again on its
// own when precopy fails), pauses for good at the switch to postcopy or at completion, and the
// target runs from the switch (postcopy) or from completion on, as the source ran.
struct MigrationScript {
  // Polls in "active" before "completed" (each counts as a pass over memory), and polls in
  // "postcopy-active" before "completed" once switched.
  int active_polls = 3;
  int postcopy_polls = 2;
  // Fail (QEMU reports "failed") at this poll instead of going on; 0: never.
  int fail_at_poll = 0;
  // The target's QEMU dies at this poll (0: never): precopy then fails, postcopy pauses.
  int kill_target_at_poll = 0;
  // This many queries right after completion, or right after the switch to postcopy, time out
  // (QMP answers delayed past their timeout); the migration goes on meanwhile.
  int query_timeouts_at_completion = 0;
  int query_timeouts_in_postcopy = 0;
  // A cancel arrives as the migration completes, and loses: it completes.
  bool cancel_loses_race = false;
  // The target's QEMU dies right after a precopy completes (before anyone asks it).
  bool kill_target_at_completion = false;
  // The VMs run under KVM (false: TCG).
  bool kvm = false;
};
class FakeHypervisor {
 public:
  FakeHypervisor() = default;
  FakeHypervisor(const FakeHypervisor&) = delete;
  FakeHypervisor& operator=(const FakeHypervisor&) = delete;

  // A VM that runs already, reached at `qmp_address` (what the agent's VmConfig.qmp says).
  FakeVm& AddVm(const std::string& name, const std::string& qmp_address, core::Resources size,
                const std::string& run_state = "running");
  // The VM reached at `qmp_address`, if any.
  FakeVm* Find(const std::string& qmp_address);
  // The VM named `name` that runs (none, or the first of several).
  FakeVm* Running(const std::string& name);
  // How many VMs named `name` run ("running" or "paused": not gone, not waiting for a
  // migration, not left behind by one).
  int RunningCopies(const std::string& name) const;
  // The most copies of `name` that ever ran at once (checked after every change of run state).
  int MaxRunningCopies(const std::string& name) const;

  void SetMigrationScript(const MigrationScript& script);

 private:
  friend class FakeVm;
  friend class FakeConnection;
  friend class FakeSource;
  friend class FakeDriver;
  friend class FakeIncoming;
  friend class FakeVmDriverFactory;
  FakeVm& AddLocked(const std::string& name, const std::string& qmp_address, core::Resources size,
                    const std::string& run_state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int CopiesLocked(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the running copies after a change.
  void Track() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<FakeVm>> vms_ ABSL_GUARDED_BY(mu_);
  MigrationScript script_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> max_copies_ ABSL_GUARDED_BY(mu_);
  int next_incoming_ ABSL_GUARDED_BY(mu_) = 1;
};

// The VmDriverFactory of one agent (node `node`) over the hypervisor's VMs.
class FakeVmDriverFactory final : public agent::VmDriverFactory {
 public:
  FakeVmDriverFactory(FakeHypervisor& hv, std::string node) : hv_(hv), node_(std::move(node)) {}

  absl::StatusOr<agent::OpenedVm> Open(const api::v1::VmConfig& vm,
                                       const core::Resources& compute_unit,
                                       int64_t granted_milli_cpu,
                                       absl::Duration request_timeout) override;
  absl::StatusOr<std::unique_ptr<agent::IncomingVm>> StartIncoming(
      const api::v1::PrepareIncomingRequest& request, const std::string& source_node) override;

  // How many times Open was called (runner starts and restarts), and the granted milli-CPU the
  // last Open of `vm` (its QMP address) was given.
  int opens() const;
  int64_t granted_milli_cpu(const std::string& qmp_address) const;
  // The host cgroup (VmConfig.host_cgroup) the last Open of `qmp_address` was given.
  std::string host_cgroup(const std::string& qmp_address) const;
  // StartIncoming fails with `error` (OK: it works again).
  void FailIncoming(absl::Status error);
  // Runs `hook` with the request at the start of every StartIncoming, without the factory's
  // lock: a test acts while the agent waits for a target's QEMU to start.
  void OnStartIncoming(std::function<void(const api::v1::PrepareIncomingRequest&)> hook);
  // The requests StartIncoming was given (the agent's, as it starts a target), in order.
  std::vector<api::v1::PrepareIncomingRequest> incoming_requests() const;

 private:
  FakeHypervisor& hv_;
  const std::string node_;
  mutable absl::Mutex mu_;
  int opens_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> granted_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> host_cgroups_ ABSL_GUARDED_BY(mu_);
  absl::Status incoming_error_ ABSL_GUARDED_BY(mu_);
  std::function<void(const api::v1::PrepareIncomingRequest&)> incoming_hook_ ABSL_GUARDED_BY(mu_);
  std::vector<api::v1::PrepareIncomingRequest> incoming_requests_ ABSL_GUARDED_BY(mu_);
};

// The monitor address FakeVmDriverFactory gives a migrated-in VM: "fake-monitor:<vm>" (the
// monitor runs inside the VM, so it moves with it).
std::string FakeMonitorAddress(const std::string& vm);
// An agent's config of a fake VM: QMP at "fake:<vm>", its monitor at FakeMonitorAddress(vm),
// migratable, with `bounds` (CU) and a launch spec of 1 to 8 vCPUs and 1 to 8 memory slots of
// 1 GiB.
api::v1::VmConfig FakeVmConfig(const std::string& vm, core::Bounds bounds);
// The host cgroup a migrated-in fake VM's QEMU runs in (IncomingVm::host_cgroup).
std::string FakeHostCgroup(const std::string& qmp_address);

}  // namespace autoscale::testing
