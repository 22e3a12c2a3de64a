// The agent's decision state machine for one VM: pure, deterministic, no I/O, no threads. The
// agent, the tests and the simulator all run this same code.
//
// The state holds what the agent knows about the VM (its size, bounds, whether it migrates), the
// scheduler side (last permit, request in flight, last failure or denial), the monitor side
// (approved size, request in flight, denied downscale, requested upscale) and the metrics.
// `NextActions(now)` says which requests to start and how long to wait before asking again; the
// caller carries them out and reports back through the `...Started/Succeeded/Failed` methods.
//
// Ordering (neon-autoscaling.md section 2.5):
//   grow:   scheduler permit -> resize the VM -> notify the monitor (in steps of <= 1 CU)
//   shrink: monitor approval (steps of <= 1 CU) -> resize the VM -> report to the scheduler
// Safety: the VM never grows past its permit, never shrinks below what the monitor approved,
// never shrinks on missing metrics, is not resized while migrating, and at most one request of
// each kind is in flight.
//
// A typical executor loop (one mutex around the state):
//
//   ActionSet a = state.NextActions(clock.Now());
//   if (a.scheduler_request) {
//     state.SchedulerRequestStarted(now, a.scheduler_request->target);
//     ... send; then SchedulerRequestSucceeded(now, permit) or SchedulerRequestFailed(now)
//   }
//   ... sleep until a.wait or until the state changes.
//
// Every change to the state bumps `generation()`, and every ActionSet carries the generation it
// was computed at (`id`): an executor that computed actions, released the lock and came back
// must act only if `generation() == actions.id` (otherwise the advice is stale).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "absl/time/time.h"
#include "autoscale/core/config.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/resources.h"

namespace autoscale::core {

// Ask the scheduler for a permit of `target` (an increase) or report it (a decrease or no
// change). The same request as api::v1::PermitRequest on the wire and ledger::PermitRequest in the
// ledger.
struct PermitRequest {
  std::optional<Resources> last_permit;  // absent on the first request
  Resources target;
  std::optional<SystemMetrics> metrics;
};

// Resize the VM from `current` to `target`.
struct VmResize {
  Resources current;
  Resources target;
};

// Tell the monitor the VM now has `target` (upscale), or ask it whether the VM may shrink to
// `target` (downscale). `current` is what the monitor last approved.
struct MonitorUpscale {
  Resources current;
  Resources target;
};
struct MonitorDownscale {
  Resources current;
  Resources target;
};

struct ActionSet {
  // The state's generation when these actions were computed.
  uint64_t id = 0;
  // Call NextActions again after this long even if nothing changes (absent: only on change).
  std::optional<absl::Duration> wait;
  std::optional<PermitRequest> scheduler_request;
  std::optional<VmResize> vm_resize;
  std::optional<MonitorUpscale> monitor_upscale;
  std::optional<MonitorDownscale> monitor_downscale;
};

// The desired size and why.
struct Desired {
  Resources resources;
  // Compute units after monitor, denial and stabilization adjustments, before bounds.
  uint32_t goal_cu = 0;
  // What decided the final value (a Goal signal, or an adjustment).
  Signal decided_by = Signal::kNone;
  // How long the fields above hold if the state does not change: until a timed adjustment (the
  // stabilization window, a monitor's upscale request or denied downscale) ends. Absent: until
  // the state changes.
  std::optional<absl::Duration> expires;
  Goal goal;
};

struct StateConfig {
  Resources compute_unit;
  ScalingConfig scaling;
  Timings timings;
};

class State {
 public:
  // `current` is what the VM has now; `bounds` its range in compute units.
  State(const StateConfig& config, Resources current, Bounds bounds);
  // The same, with a config that many states share (a simulated fleet: the states stay smaller
  // and read one copy; `config` must not be null). UpdateScalingConfig and UpdateTimings give
  // this state its own copy.
  State(std::shared_ptr<const StateConfig> config, Resources current, Bounds bounds);

  // The actions to start now, and how long to wait before asking again.
  ActionSet NextActions(absl::Time now) const;
  // The size the VM should have now (what NextActions works towards).
  Desired DesiredResources(absl::Time now) const;

  uint64_t generation() const { return generation_; }
  // Changes (with generation()) whenever DesiredResources may change other than by time passing
  // (Desired::expires says when that happens): not on scheduler traffic, started requests or
  // the monitor's approvals, nor on metrics that give a goal of the same size, signal and
  // completeness. A driver may skip re-evaluating the desired size while it holds.
  uint64_t desired_generation() const { return desired_generation_; }
  // The goal of the last metrics (ComputeGoal), before the adjustments of DesiredResources.
  const Goal& goal() const { return goal_; }
  const StateConfig& config() const { return *config_; }
  Resources current() const { return current_; }
  Bounds bounds() const { return bounds_; }
  bool migrating() const { return migrating_; }
  std::optional<Resources> permit() const { return scheduler_.permit; }
  std::optional<Resources> monitor_approved() const { return monitor_.approved; }

  // --- VM and inputs ---
  void UpdateBounds(Bounds bounds);
  void UpdateScalingConfig(const ScalingConfig& scaling);
  // New timers (the agent's config changed): the waits still to come follow them.
  void UpdateTimings(const Timings& timings);
  // While migrating, the VM is not resized (its desired size is its current size).
  void SetMigrating(bool migrating);
  void UpdateSystemMetrics(absl::Time now, const SystemMetrics& metrics);
  void UpdateLfcMetrics(absl::Time now, const LfcMetrics& metrics);
  // The metrics source went away: keep the last metrics for growth, but never shrink on them
  // until fresh metrics arrive (UpdateSystemMetrics).
  void MarkMetricsStale();
  // Forget metrics altogether: no downscale until fresh metrics arrive.
  void ClearMetrics();
  bool metrics_stale() const { return metrics_stale_; }

  // --- scheduler ---
  void SchedulerRequestStarted(absl::Time now, Resources target);
  // Validates the permit against the request and the VM: a zero permit, one above what was
  // asked, or one below what the VM uses is refused (recorded as a failed request) and the
  // error says why.
  absl::Status SchedulerRequestSucceeded(absl::Time now, Resources permit);
  // A failed request may still have been taken: the permit becomes the lower of it and what was
  // asked.
  void SchedulerRequestFailed(absl::Time now);

  // --- VM resize ---
  void VmResizeStarted(absl::Time now, Resources target);
  // `reached` is the size the VM has after the resize (it may fall short of the target).
  void VmResizeSucceeded(absl::Time now, Resources reached);
  // `now_at`, if known, is where the failed resize left the VM (it may have moved part of the way).
  void VmResizeFailed(absl::Time now, std::optional<Resources> now_at = std::nullopt);

  // --- monitor ---
  // A monitor connection came up (the monitor is assumed to be set for the current size) or
  // went away (no downscale until it returns; its in-flight request is dropped).
  void MonitorConnected(absl::Time now);
  void MonitorDisconnected();
  // The monitor asked for more memory.
  void MonitorUpscaleRequested(absl::Time now);
  void MonitorUpscaleStarted(absl::Time now, Resources target);
  void MonitorUpscaleSucceeded(absl::Time now);
  void MonitorUpscaleFailed(absl::Time now);
  void MonitorDownscaleStarted(absl::Time now, Resources target);
  void MonitorDownscaleApproved(absl::Time now);
  void MonitorDownscaleDenied(absl::Time now);
  void MonitorDownscaleFailed(absl::Time now);

  // What a scheduler / monitor / VM request in flight asks for, if any.
  std::optional<Resources> scheduler_request_in_flight() const;
  std::optional<Resources> vm_resize_in_flight() const { return vm_.ongoing; }
  std::optional<Resources> monitor_request_in_flight() const;

 private:
  struct TimedResources {
    absl::Time at;
    Resources resources;
  };
  struct SchedulerSide {
    bool ongoing = false;
    std::optional<TimedResources> last_request;
    std::optional<absl::Time> last_failure;
    std::optional<Resources> permit;
  };
  struct MonitorSide {
    enum class Kind { kUpscale, kDownscale };
    struct Ongoing {
      Kind kind;
      Resources requested;
    };
    struct Denied {
      absl::Time at;
      Resources current;
      Resources requested;
    };
    std::optional<Ongoing> ongoing;
    std::optional<TimedResources> requested_upscale;  // at, base (approved when asked)
    std::optional<Denied> denied_downscale;
    std::optional<Resources> approved;  // set iff connected
    std::optional<absl::Time> downscale_failure;
    std::optional<absl::Time> upscale_failure;
  };
  struct VmSide {
    std::optional<Resources> ongoing;
    std::optional<absl::Time> last_failure;
  };
  struct GoalSample {
    absl::Time at;
    uint32_t goal_cu;
  };

  // The desired size without the goal's breakdown (NextActions needs only this); `until` becomes
  // the end of the first timed adjustment in it, if earlier. The actions below likewise lower
  // `until` to the end of the first timer that holds them back.
  struct Adjusted {
    Resources resources;
    uint32_t goal_cu = 0;
    Signal decided_by = Signal::kNone;
  };
  Adjusted ComputeDesired(absl::Time now, std::optional<absl::Time>* until) const;
  std::optional<PermitRequest> SchedulerAction(absl::Time now, const Resources& desired,
                                               std::optional<absl::Time>* until) const;
  std::optional<VmResize> VmAction(absl::Time now, const Resources& desired,
                                   const std::optional<Resources>& scheduler_requested,
                                   std::optional<absl::Time>* until) const;
  std::optional<MonitorUpscale> MonitorUpscaleAction(absl::Time now, const Resources& desired,
                                                     std::optional<absl::Time>* until) const;
  std::optional<MonitorDownscale> MonitorDownscaleAction(absl::Time now, const Resources& desired,
                                                         bool upscale_planned,
                                                         std::optional<absl::Time>* until) const;
  // Recomputes the cached goal after metrics or config changed and records it for the
  // stabilization window. Returns whether the goal's size, signal or completeness changed.
  bool RefreshGoal(absl::Time now);
  void RecomputeGoal();
  void Changed() { ++generation_; }
  void DesiredChanged() {
    ++desired_generation_;
    Changed();
  }

  std::shared_ptr<const StateConfig> config_;  // null only in a moved-from state
  Resources current_;
  Bounds bounds_;
  bool migrating_ = false;
  std::optional<SystemMetrics> system_metrics_;
  std::optional<LfcMetrics> lfc_metrics_;
  bool metrics_stale_ = false;
  Goal goal_;                            // ComputeGoal of the metrics above
  std::deque<GoalSample> goal_history_;  // within the stabilization window, decreasing goals
  SchedulerSide scheduler_;
  MonitorSide monitor_;
  VmSide vm_;
  uint64_t generation_ = 1;
  uint64_t desired_generation_ = 1;
};

}  // namespace autoscale::core
