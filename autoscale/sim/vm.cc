// One VM's part of a step (its workload, guest, monitor and metrics) and its agent: the executor
// driver that starts what the core advises (core/executor.h) and feeds the simulated results back.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "autoscale/base/units.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/goal.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/internal/fast_math.h"
#include "autoscale/sim/internal/fleet.h"
#include "autoscale/sim/internal/share.h"
#include "autoscale/sim/simulation.h"
#include "glog/logging.h"

namespace autoscale::sim {
namespace {

// The longest delay of an event (about 31 years): an event that far off never happens, and the
// time of any event stays far from int64 overflow (runs last at most about 10 years).
constexpr int64_t kMaxDelayNs = 1'000'000'000'000'000'000;
constexpr int64_t kMinuteNs = 60'000'000'000;
constexpr int64_t kLfcPageBytes = static_cast<int64_t>(core::kLfcPageBytes);

int64_t DelayNs(double ns) {
  return ns >= static_cast<double>(kMaxDelayNs) ? kMaxDelayNs : static_cast<int64_t>(ns);
}

// A result the simulator makes up always fits its operation; only a permit can be refused.
void Feed(core::State& state, absl::Time now, core::OperationKind kind,
          const core::OperationResult& result) {
  const absl::Status s = core::Finish(state, now, kind, result);
  DCHECK(s.ok()) << s;
}

}  // namespace

const char* VmEventKindName(VmEvent::Kind kind) {
  switch (kind) {
    case VmEvent::Kind::kMetrics:
      return "metrics";
    case VmEvent::Kind::kMonitorUpscaleRequest:
      return "monitor_upscale_request";
    case VmEvent::Kind::kSchedulerRequest:
      return "scheduler_request";
    case VmEvent::Kind::kSchedulerReply:
      return "scheduler_reply";
    case VmEvent::Kind::kVmResize:
      return "vm_resize";
    case VmEvent::Kind::kVmResizeDone:
      return "vm_resize_done";
    case VmEvent::Kind::kMonitorUpscale:
      return "monitor_upscale";
    case VmEvent::Kind::kMonitorDownscale:
      return "monitor_downscale";
    case VmEvent::Kind::kMonitorReply:
      return "monitor_reply";
    case VmEvent::Kind::kMigrationStarted:
      return "migration_started";
    case VmEvent::Kind::kMigrationEnded:
      return "migration_ended";
    case VmEvent::Kind::kLfcMetrics:
      return "lfc_metrics";
  }
  return "?";
}

void Simulation::StepVm(Shard& shard, Vm& vm, int64_t step, int64_t t, absl::Time now) {
  Account(vm, t);
  vm.demand = vm.workload->At(absl::Nanoseconds(t));
  const Demand& d = vm.demand;
  vm.demand_share = LargerShare(d.milli_cpu, d.memory_bytes, config_.compute_unit);
  vm.peak_demand_cu = std::max(vm.peak_demand_cu, vm.demand_share);
  vm.peak_demand.milli_cpu = std::max(vm.peak_demand.milli_cpu, d.milli_cpu);
  vm.peak_demand.memory_bytes = std::max(vm.peak_demand.memory_bytes, d.memory_bytes);
  vm.peak_demand.lfc_working_set_bytes =
      std::max(vm.peak_demand.lfc_working_set_bytes, d.lfc_working_set_bytes);

  // Linux's load average: runnable tasks (here: the CPU demand, in cores) averaged exponentially.
  const double cores = static_cast<double>(d.milli_cpu) / 1000;
  vm.load1 = vm.load1 * load1_decay_ + cores * (1 - load1_decay_);
  vm.load5 = vm.load5 * load5_decay_ + cores * (1 - load5_decay_);
  const int64_t used = std::min(d.memory_bytes, vm.have.memory_bytes);

  // The monitor: the kernel watcher fires when usage crosses the threshold, else the timer
  // samples.
  const int64_t level = vm.monitor.threshold_bytes();
  const bool crossed = vm.used < level && used >= level;
  vm.used = used;
  if (crossed ? vm.monitor.OnUsageAbove(now, used) : vm.monitor.Sample(now, used)) {
    ++vm.result.memory_pressure_events;
    Schedule(shard, vm, kMonitorRequest, t + Latency(vm, config_.latencies.monitor / 2));
  }

  vm.UpdateShortage();

  const bool metrics = (step + vm.metrics_phase) % metrics_every_ == 0;
  bool lfc = false;
  if (vm.lfc != nullptr) {
    // The pages of a minute are touched at its first step.
    const int64_t minute = t / kMinuteNs;
    if (minute != vm.lfc->minute) {
      vm.lfc->model.Touch(minute, d.lfc_working_set_bytes / kLfcPageBytes);
      vm.lfc->minute = minute;
    }
    lfc = (step + vm.lfc->phase) % lfc_every_ == 0;
  }
  if (metrics || lfc) {
    Receive(shard, vm, metrics, lfc, t, now);
  } else if (vm.undriven) {
    Drive(shard, vm, t, now);
  }

  if (vm.series != nullptr && step % series_every_ == 0) {
    VmSeries& s = *vm.series;
    s.time.push_back(absl::Nanoseconds(t));
    s.demand.push_back(d);
    s.allocated.push_back(vm.have);
    const core::Goal g = LatestGoal(vm);
    auto cu = [](std::optional<double> v) { return v.value_or(std::nan("")); };
    s.goal_cu.push_back(vm.metrics_received ? g.goal_cu : std::nan(""));
    s.cpu_cu.push_back(cu(g.cpu_cu));
    s.memory_cu.push_back(cu(g.memory_cu));
    s.lfc_cu.push_back(cu(g.lfc_cu));
  }
}

core::Goal Simulation::LatestGoal(const Vm& vm) const {
  const bool lfc = vm.lfc != nullptr && vm.lfc->received;
  return core::ComputeGoal(config_.scaling, config_.compute_unit,
                           vm.metrics_received ? &vm.metrics : nullptr,
                           lfc ? &vm.lfc->latest : nullptr);
}

void Simulation::Receive(Shard& shard, Vm& vm, bool metrics, bool lfc, int64_t t, absl::Time now) {
  // Skipping (simulation.h): while no timer of the agent's state is due, nothing else changed
  // since it was last asked and its reaction check holds, metrics that give the goal the state
  // has change no decision: they wait for the state. Metrics and LFC metrics that come at one
  // step are taken one after the other, as the state would take them.
  const bool may_wait =
      !config_.step_every_vm && !vm.AgentDue(t) && vm.reaction_fresh && t < vm.reaction_until;
  bool asked = false;
  core::Signal decided_by = core::Signal::kNone;
  if (metrics) {
    const double cached =
        vm.lfc == nullptr
            ? 0
            : static_cast<double>(std::min(vm.demand.lfc_working_set_bytes,
                                           std::max<int64_t>(0, vm.have.memory_bytes - vm.used)));
    const core::SystemMetrics m{.load_avg_1m = vm.load1,
                                .load_avg_5m = vm.load5,
                                .memory_usage_bytes = static_cast<double>(vm.used),
                                .memory_cached_bytes = cached};
    bool wait = false;
    if (may_wait) {
      const core::Goal goal =
          core::ComputeGoal(config_.scaling, config_.compute_unit, &m,
                            vm.lfc != nullptr && vm.lfc->received ? &vm.lfc->latest : nullptr);
      wait = GoalKey::Of(goal) == vm.goal_key;
      decided_by = goal.decided_by;
    }
    if (wait) {
      vm.metrics_pending = true;
      vm.metrics_at = t;
    } else {
      // Metrics that waited and are superseded now need not reach the state first: they gave
      // the goal it has, and without a stabilization window it keeps no record of them (only
      // its generation() would count them). Saves a goal computation every scheduler tick.
      if (vm.metrics_pending && (vm.lfc == nullptr || !vm.lfc->pending) &&
          config_.scaling.downscale_stabilization_window <= absl::ZeroDuration()) {
        vm.metrics_pending = false;
      }
      Deliver(vm);
      vm.state.UpdateSystemMetrics(now, m);
      asked = true;
    }
    vm.metrics = m;
    vm.metrics_received = true;
    ++vm.result.metrics;
    EmitMetrics(vm, now);
  }
  if (lfc) {
    LfcState& l = *vm.lfc;
    l.model.Windows(l.minute, &l.next.working_set_pages);
    bool wait = false;
    if (may_wait && !asked) {
      const core::Goal goal =
          core::ComputeGoal(config_.scaling, config_.compute_unit,
                            vm.metrics_received ? &vm.metrics : nullptr, &l.next);
      wait = GoalKey::Of(goal) == vm.goal_key;
      decided_by = goal.decided_by;
    }
    std::swap(l.latest, l.next);
    l.received = true;
    if (wait) {
      l.pending = true;
      l.at = t;
    } else {
      Deliver(vm);
      vm.state.UpdateLfcMetrics(now, l.latest);
      asked = true;
    }
    EmitLfc(vm, now);
  }
  if (asked) decided_by = vm.state.goal().decided_by;
  if (metrics) CountGoal(vm, decided_by);
  if (!asked) return;

  vm.goal_key = GoalKey::Of(vm.state.goal());
  if (config_.step_every_vm || vm.state.desired_generation() != vm.reaction_generation ||
      t >= vm.reaction_until) {
    CheckReaction(vm, now);
  }
  Drive(shard, vm, t, now);
}

void Simulation::Deliver(Vm& vm) {
  // In the order they came (an LFC fetch and metrics may both wait).
  const bool lfc_pending = vm.lfc != nullptr && vm.lfc->pending;
  if (lfc_pending && (!vm.metrics_pending || vm.lfc->at < vm.metrics_at)) {
    vm.state.UpdateLfcMetrics(At(vm.lfc->at), vm.lfc->latest);
    vm.lfc->pending = false;
  }
  if (vm.metrics_pending) {
    vm.state.UpdateSystemMetrics(At(vm.metrics_at), vm.metrics);
    vm.metrics_pending = false;
  }
  if (vm.lfc != nullptr && vm.lfc->pending) {
    vm.state.UpdateLfcMetrics(At(vm.lfc->at), vm.lfc->latest);
    vm.lfc->pending = false;
  }
}

void Simulation::CountGoal(Vm& vm, core::Signal decided_by) {
  switch (decided_by) {
    case core::Signal::kCpu:
      ++vm.result.goal_by_cpu;
      break;
    case core::Signal::kMemory:
      ++vm.result.goal_by_memory;
      break;
    case core::Signal::kMemoryTotal:
      ++vm.result.goal_by_memory_total;
      break;
    case core::Signal::kLfc:
      ++vm.result.goal_by_lfc;
      break;
    default:
      break;
  }
}

void Simulation::EmitMetrics(const Vm& vm, absl::Time now) {
  if (!config_.on_event) return;
  VmEvent e{.at = now, .vm = vm.index, .kind = VmEvent::Kind::kMetrics, .metrics = vm.metrics};
  config_.on_event(e);
}

void Simulation::EmitLfc(const Vm& vm, absl::Time now) {
  if (!config_.on_event) return;
  VmEvent e{.at = now, .vm = vm.index, .kind = VmEvent::Kind::kLfcMetrics, .lfc = vm.lfc->latest};
  config_.on_event(e);
}

void Simulation::Sync(Vm& vm) {
  vm.have = vm.state.current();
  vm.have_share = LargerShare(vm.have, config_.compute_unit);
}

void Simulation::HandleEvent(Shard& shard, Vm& vm, int kind, int64_t t) {
  const absl::Time now = At(t);
  if (kind == kWake && vm.wake_at != t) return;  // replaced by a later call
  Deliver(vm);
  switch (kind) {
    case kWake:
      vm.wake_at = -1;
      break;
    case kSchedulerReply:
      if (vm.permit_reply) {
        const core::Resources permit = *vm.permit_reply;
        Emit(vm, t, VmEvent::Kind::kSchedulerReply, permit);
        absl::Status s = core::Finish(vm.state, now, core::OperationKind::kSchedulerRequest,
                                      core::OperationResult::Permit(permit));
        if (!s.ok()) {
          ++vm.result.invalid_permits;
          LOG_FIRST_N(ERROR, 5) << "simulation: VM " << vm.name
                                << ": the core refused the scheduler's answer: " << s;
        } else {
          switch (core::ClassifyGrant(vm.permit_before, vm.asked, permit)) {
            case core::Grant::kFull:
              ++vm.result.full_grants;
              break;
            case core::Grant::kPartial:
              ++vm.result.partial_grants;
              break;
            case core::Grant::kDenied:
              ++vm.result.denials;
              break;
            case core::Grant::kNoGrowth:
              break;
          }
        }
      } else {
        Emit(vm, t, VmEvent::Kind::kSchedulerReply, {}, false);
        Feed(vm.state, now, core::OperationKind::kSchedulerRequest,
             core::OperationResult::Failed());
      }
      break;
    case kResizeDone: {
      Account(vm, t);
      const core::Resources before = vm.have;
      if (vm.resize_ok) {
        const core::Resources& r = vm.resize_target;
        Feed(vm.state, now, core::OperationKind::kVmResize, core::OperationResult::Resized(r));
        if (r.AnyGreaterThan(before)) ++vm.result.upscales;
        if (r.AnyLessThan(before)) ++vm.result.downscales;
        vm.result.peak_size = core::Resources::Max(vm.result.peak_size, r);
        Emit(vm, t, VmEvent::Kind::kVmResizeDone, r);
      } else {
        ++vm.result.resize_failures;
        Feed(vm.state, now, core::OperationKind::kVmResize, core::OperationResult::Failed());
        Emit(vm, t, VmEvent::Kind::kVmResizeDone, {}, false);
      }
      Sync(vm);
      vm.UpdateShortage();
      if (vm.wish && vm.wish->second.FitsIn(vm.state.current())) {
        vm.result.reaction_times.push_back(absl::Nanoseconds(t - vm.wish->first));
        vm.wish.reset();
      }
      break;
    }
    case kMonitorReply:
      if (vm.monitor_kind == core::OperationKind::kMonitorUpscale) {
        if (vm.monitor_ok) {
          vm.monitor.NotifyUpscale(vm.monitor_target.memory_bytes);
          Feed(vm.state, now, vm.monitor_kind, core::OperationResult::Done());
        } else {
          ++vm.result.monitor_failures;
          Feed(vm.state, now, vm.monitor_kind, core::OperationResult::Failed());
        }
        Emit(vm, t, VmEvent::Kind::kMonitorReply, vm.monitor_target, vm.monitor_ok);
      } else {
        const MonitorModel::Decision d =
            vm.monitor_ok ? vm.monitor.TryDownscale(now, vm.monitor_target.memory_bytes)
                          : MonitorModel::Decision::kError;
        if (d == MonitorModel::Decision::kError) {
          ++vm.result.monitor_failures;
          Feed(vm.state, now, vm.monitor_kind, core::OperationResult::Failed());
          Emit(vm, t, VmEvent::Kind::kMonitorReply, vm.monitor_target, false);
        } else if (d == MonitorModel::Decision::kApproved) {
          Feed(vm.state, now, vm.monitor_kind, core::OperationResult::Done());
          Emit(vm, t, VmEvent::Kind::kMonitorReply, vm.monitor_target, true);
        } else {
          ++vm.result.downscale_denials;
          Feed(vm.state, now, vm.monitor_kind, core::OperationResult::Denied());
          Emit(vm, t, VmEvent::Kind::kMonitorReply, vm.monitor_target, false, /*denied=*/true);
        }
      }
      break;
    case kMonitorRequest:
      vm.state.MonitorUpscaleRequested(now);
      Emit(vm, t, VmEvent::Kind::kMonitorUpscaleRequest, {});
      CheckReaction(vm, now);
      break;
  }
  Drive(shard, vm, t, now);
}

void Simulation::Drive(Shard& shard, Vm& vm, int64_t t, absl::Time now) {
  // The agent's reading of the advice (core/executor.h): start what it advises, one operation
  // after the other.
  ++shard.agent_asks;
  const std::optional<absl::Duration> wait = core::StartAll(
      vm.state, now, [&](const core::Operation& op) { Carry(shard, vm, op, t, now); });
  if (wait) {
    const int64_t at = t + std::max<int64_t>(1, DelayNs(ToNanoseconds(*wait)));
    if (at != vm.wake_at) {
      vm.wake_at = at;
      // A timer that ends at a step where the VM's metrics arrive needs no event: Receive asks
      // the agent then (the timer is due), and the event would find the timer replaced. The
      // scheduler's 15-second tick of every agent ends at such a step.
      const bool metrics_then =
          at % step_ns_ == 0 && (at / step_ns_ + vm.metrics_phase) % metrics_every_ == 0;
      if (!metrics_then) Schedule(shard, vm, kWake, at);
    }
  } else {
    vm.wake_at = -1;
  }
  vm.undriven = false;
  vm.reaction_fresh = vm.state.desired_generation() == vm.reaction_generation;
  Sync(vm);
}

void Simulation::Carry(Shard& shard, Vm& vm, const core::Operation& op, int64_t t, absl::Time now) {
  const Latencies& lat = config_.latencies;
  switch (op.kind) {
    case core::OperationKind::kSchedulerRequest: {
      vm.permit_before = op.current;
      vm.asked = op.target;
      if (config_.on_event) {
        VmEvent e{.at = now,
                  .vm = vm.index,
                  .kind = VmEvent::Kind::kSchedulerRequest,
                  .resources = op.target,
                  .last_permit = op.last_permit};
        config_.on_event(e);
      }
      ++vm.result.scheduler_requests;
      if (op.target.AnyGreaterThan(op.current)) ++vm.result.growth_requests;
      absl::StatusOr<ledger::Permit> permit =
          ledger_->Request({.node = shard.node,
                            .vm = vm.name,
                            .compute_unit = config_.compute_unit,
                            .resources = op.target,
                            .last_permit = op.last_permit},
                           vm.ledger_handle);
      if (!permit.ok()) {
        ++vm.result.invalid_permits;
        LOG_FIRST_N(ERROR, 5) << "simulation: VM " << vm.name
                              << ": the ledger refused the request: " << permit.status();
        vm.permit_reply.reset();
      } else if (vm.rng.Bernoulli(config_.failures.scheduler)) {
        ++vm.result.scheduler_failures;
        vm.permit_reply.reset();
      } else {
        vm.permit_reply = permit->resources;
      }
      Schedule(shard, vm, kSchedulerReply, t + Latency(vm, lat.scheduler));
      break;
    }
    case core::OperationKind::kVmResize: {
      Emit(vm, t, VmEvent::Kind::kVmResize, op.target);
      vm.resize_target = op.target;
      vm.resize_ok = !vm.rng.Bernoulli(config_.failures.vm_resize);
      const double vcpus =
          static_cast<double>(std::abs(op.target.milli_cpu - op.current.milli_cpu)) / 1000;
      const double gib =
          static_cast<double>(std::abs(op.target.memory_bytes - op.current.memory_bytes)) / kGiB;
      Schedule(shard, vm, kResizeDone,
               t + Latency(vm, lat.resize + lat.per_vcpu * vcpus + lat.per_gib * gib));
      break;
    }
    case core::OperationKind::kMonitorUpscale:
    case core::OperationKind::kMonitorDownscale:
      vm.monitor_kind = op.kind;
      vm.monitor_target = op.target;
      Emit(vm, t,
           op.kind == core::OperationKind::kMonitorUpscale ? VmEvent::Kind::kMonitorUpscale
                                                           : VmEvent::Kind::kMonitorDownscale,
           op.target);
      vm.monitor_ok = !vm.rng.Bernoulli(config_.failures.monitor);
      Schedule(shard, vm, kMonitorReply, t + Latency(vm, lat.monitor));
      break;
  }
}

void Simulation::Schedule(Shard& shard, Vm& vm, int kind, int64_t t) {
  shard.heap.push_back({t, shard.seq++, vm.index, static_cast<uint8_t>(kind)});
  std::push_heap(shard.heap.begin(), shard.heap.end(), Later());
}

int64_t Simulation::Latency(Vm& vm, absl::Duration d) {
  const double ns = ToNanoseconds(d);
  const double j = config_.latencies.jitter;
  return DelayNs(j > 0 ? ns * vm.rng.Uniform(1 - j, 1 + j) : ns);
}

void Simulation::Emit(const Vm& vm, int64_t t, VmEvent::Kind kind, const core::Resources& r,
                      bool ok, bool denied) {
  if (!config_.on_event) return;
  VmEvent e{.at = At(t), .vm = vm.index, .kind = kind, .resources = r, .ok = ok, .denied = denied};
  config_.on_event(e);
}

}  // namespace autoscale::sim
