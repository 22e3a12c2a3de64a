#include "autoscale/core/state.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace autoscale::core {
namespace {

// Timers are kept as the moment they end: `until` becomes the earliest (callers turn it into a
// wait once, as until - now; absl's time arithmetic is out of line, its comparisons are not).
void MinUntil(std::optional<absl::Time>* until, absl::Time end) {
  if (until != nullptr && (!until->has_value() || end < **until)) *until = end;
}

std::optional<absl::Duration> WaitUntil(const std::optional<absl::Time>& until, absl::Time now) {
  if (!until) return std::nullopt;
  return *until - now;
}

// Moves each field of `current` towards `desired`, but a decrease stops at `lower` and an
// increase at `upper` (bounds on the far side of `current` are ignored).
Resources Clamp(const Resources& current, const Resources& desired, const Resources& lower,
                const Resources& upper) {
  auto field = [](int64_t cur, int64_t want, int64_t lo, int64_t hi) {
    if (want < cur) return std::max(want, std::min(lo, cur));
    if (want > cur) return std::min(want, std::max(hi, cur));
    return cur;
  };
  return {
      field(current.milli_cpu, desired.milli_cpu, lower.milli_cpu, upper.milli_cpu),
      field(current.memory_bytes, desired.memory_bytes, lower.memory_bytes, upper.memory_bytes)};
}

// The smallest whole number of CUs strictly above `r` in the given field.
uint32_t CuAbove(int64_t amount, int64_t per_cu) {
  return 1 + static_cast<uint32_t>(amount / per_cu);
}

}  // namespace

State::State(const StateConfig& config, Resources current, Bounds bounds)
    : State(std::make_shared<const StateConfig>(config), current, bounds) {}

State::State(std::shared_ptr<const StateConfig> config, Resources current, Bounds bounds)
    : config_(std::move(config)), current_(current), bounds_(bounds) {
  goal_ = ComputeGoal(config_->scaling, config_->compute_unit, nullptr, nullptr);
}

State::Adjusted State::ComputeDesired(absl::Time now, std::optional<absl::Time>* expires) const {
  const Resources& cu = config_->compute_unit;
  uint32_t goal_cu = goal_.goal_cu;
  Signal signal = goal_.decided_by;

  // Beyond the reference: hold the highest goal seen within the stabilization window. The history
  // is a decreasing sequence, so its first unexpired sample is the window's maximum.
  const absl::Duration window = config_->scaling.downscale_stabilization_window;
  if (window > absl::ZeroDuration()) {
    for (const GoalSample& s : goal_history_) {
      if (s.at + window <= now) continue;
      if (s.goal_cu > goal_cu) {
        goal_cu = s.goal_cu;
        signal = Signal::kStabilization;
        MinUntil(expires, s.at + window);
      }
      break;
    }
  }
  const uint32_t initial_cu = goal_cu;

  // The monitor asked for more memory: at least one CU above what it had then, for a while.
  if (monitor_.requested_upscale) {
    const absl::Time end =
        monitor_.requested_upscale->at + config_->timings.monitor_requested_upscale_valid;
    if (end > now) {
      uint32_t required =
          CuAbove(monitor_.requested_upscale->resources.memory_bytes, cu.memory_bytes);
      if (required > initial_cu) {
        goal_cu = std::max(goal_cu, required);
        signal = Signal::kMonitorUpscale;
        MinUntil(expires, end);
      }
    }
  }

  // The monitor refused a downscale recently: stay above what it refused, for a while.
  const MonitorSide::Denied* denied = nullptr;
  absl::Time denied_end;
  if (monitor_.denied_downscale) {
    denied_end = monitor_.denied_downscale->at + config_->timings.monitor_retry_denied_downscale;
    if (denied_end > now) denied = &*monitor_.denied_downscale;
  }
  if (denied != nullptr) {
    uint32_t required = std::max(CuAbove(denied->requested.milli_cpu, cu.milli_cpu),
                                 CuAbove(denied->requested.memory_bytes, cu.memory_bytes));
    if (required > initial_cu) {
      if (required > goal_cu) signal = Signal::kDeniedDownscale;
      goal_cu = std::max(goal_cu, required);
      MinUntil(expires, denied_end);
    }
  }

  Resources goal = cu * goal_cu;
  // Missing metrics: never below what the VM uses (an agent restart must not flush the LFC).
  if (!goal_.has_all_metrics && current_.AnyGreaterThan(goal)) {
    goal = Resources::Max(goal, current_);
    signal = Signal::kCurrentUsage;
  }

  const Resources min = cu * bounds_.min_cu;
  const Resources max = cu * bounds_.max_cu;
  Resources result = Resources::Max(Resources::Min(goal, max), min);
  if (goal.AnyGreaterThan(max)) signal = Signal::kMaxBound;
  if (goal.AnyLessThan(min)) signal = Signal::kMinBound;

  // During a denied downscale's cooldown stay one CU above the refused size (but not above the
  // size the VM had then), even past the maximum: better a little extra than an OOM.
  if (denied != nullptr) {
    Resources floor = {
        std::min(denied->current.milli_cpu,
                 cu.milli_cpu * CuAbove(denied->requested.milli_cpu, cu.milli_cpu)),
        std::min(denied->current.memory_bytes,
                 cu.memory_bytes * CuAbove(denied->requested.memory_bytes, cu.memory_bytes))};
    Resources raised = Resources::Max(result, floor);
    if (raised != result) {
      result = raised;
      signal = Signal::kDeniedDownscale;
      MinUntil(expires, denied_end);
    }
  }

  // Beyond the reference: shrink by at most max_downscale_step_cu per step.
  if (config_->scaling.max_downscale_step_cu > 0) {
    Resources lowest = Resources::SaturatingSub(
        current_, cu * static_cast<int64_t>(config_->scaling.max_downscale_step_cu));
    Resources limited = Clamp(current_, result, lowest, result);
    if (limited != result) {
      result = limited;
      signal = Signal::kMaxDownscaleStep;
    }
  }

  if (migrating_) {
    result = current_;
    signal = Signal::kMigrating;
  }

  return {result, goal_cu, signal};
}

Desired State::DesiredResources(absl::Time now) const {
  Desired d;
  std::optional<absl::Time> until;
  const Adjusted a = ComputeDesired(now, &until);
  d.expires = WaitUntil(until, now);
  d.resources = a.resources;
  d.goal_cu = a.goal_cu;
  d.decided_by = a.decided_by;
  d.goal = goal_;
  return d;
}

std::optional<PermitRequest> State::SchedulerAction(absl::Time now, const Resources& desired,
                                                    std::optional<absl::Time>* until) const {
  if (scheduler_.ongoing) return std::nullopt;  // one at a time
  const Timings& t = config_->timings;
  // What the VM uses, counting a resize in flight as done (it may be growing).
  Resources in_use = current_;
  if (vm_.ongoing) in_use = Resources::Max(in_use, *vm_.ongoing);
  // Decreases are reported only after the VM shrank, so never ask below what it uses. (The
  // reference compares with the size before a growing resize ends, so a request made meanwhile
  // can lower the permit under the size the VM is about to reach.)
  const Resources request = Resources::Max(desired, in_use);

  absl::Time tick = now;
  if (scheduler_.last_request) {
    tick = scheduler_.last_request->at + t.scheduler_request_at_least_every;
  }
  const bool tick_due = tick <= now;

  // After a partial or denied grant, wait before asking again.
  absl::Time retry = now;
  if (scheduler_.last_request && scheduler_.permit &&
      scheduler_.last_request->resources.AnyGreaterThan(*scheduler_.permit)) {
    retry = scheduler_.last_request->at + t.scheduler_retry_denied_upscale;
  }
  const bool retry_waiting = retry > now;
  const bool want_change =
      scheduler_.last_request && scheduler_.permit && request != *scheduler_.permit;
  const bool change_due = want_change && !retry_waiting;

  if (scheduler_.last_failure) {
    const absl::Time end = *scheduler_.last_failure + t.scheduler_retry_failed_request;
    if (end > now) {
      MinUntil(until, end);
      return std::nullopt;
    }
  }
  // A failed request is retried once the wait passed. (The reference retries only at the next
  // tick when there is no permit yet, so a VM whose first request failed cannot grow for 15 s.)
  const bool retry_failed = scheduler_.last_failure.has_value();
  if (tick_due || change_due || retry_failed) {
    PermitRequest r;
    r.last_permit = scheduler_.permit;
    r.target = change_due ? request : in_use;
    r.metrics = system_metrics_;
    return r;
  }
  MinUntil(until, retry_waiting ? std::min(tick, retry) : tick);
  return std::nullopt;
}

std::optional<VmResize> State::VmAction(absl::Time now, const Resources& desired,
                                        const std::optional<Resources>& scheduler_requested,
                                        std::optional<absl::Time>* until) const {
  // Shrink no further than the monitor approved (not at all without a monitor), nor below an
  // upscale notification in flight (the monitor may already act on it; the reference misses
  // this); grow no further than the permit (not at all without one).
  Resources lower = monitor_.approved.value_or(current_);
  if (monitor_.ongoing && monitor_.ongoing->kind == MonitorSide::Kind::kUpscale) {
    lower = Resources::Max(lower, monitor_.ongoing->requested);
  }
  const Resources target = Clamp(current_, desired, lower, scheduler_.permit.value_or(current_));
  if (target == current_) return std::nullopt;
  // A scheduler request in flight or planned that does not cover the target may lower the
  // permit: wait for it.
  if (scheduler_requested && scheduler_requested->AnyLessThan(target)) return std::nullopt;
  if (vm_.ongoing) return std::nullopt;
  if (vm_.last_failure) {
    const absl::Time end = *vm_.last_failure + config_->timings.vm_retry_failed_request;
    if (end > now) {
      MinUntil(until, end);
      return std::nullopt;
    }
  }
  return VmResize{current_, target};
}

std::optional<MonitorUpscale> State::MonitorUpscaleAction(absl::Time now, const Resources& desired,
                                                          std::optional<absl::Time>* until) const {
  if (!monitor_.approved) return std::nullopt;
  const Resources approved = *monitor_.approved;
  // Tell the monitor about what the VM has (not beyond what is desired), one CU at a time. While
  // a resize is in flight, only what the VM keeps either way counts (the reference announces the
  // size of a VM that is shrinking).
  const Resources settled = vm_.ongoing ? Resources::Min(current_, *vm_.ongoing) : current_;
  Resources target = Clamp(approved, settled, approved, Resources::Max(desired, approved));
  target = Resources::Min(target, approved + config_->compute_unit);
  target = Resources::Max(target, approved);
  if (target == approved) return std::nullopt;
  if (monitor_.ongoing) return std::nullopt;
  if (monitor_.upscale_failure) {
    const absl::Time end =
        *monitor_.upscale_failure + config_->timings.monitor_retry_failed_request;
    if (end > now) {
      MinUntil(until, end);
      return std::nullopt;
    }
  }
  return MonitorUpscale{approved, target};
}

std::optional<MonitorDownscale> State::MonitorDownscaleAction(
    absl::Time now, const Resources& desired, bool upscale_planned,
    std::optional<absl::Time>* until) const {
  if (!monitor_.approved) return std::nullopt;
  const Resources approved = *monitor_.approved;
  // Ask for the desired size, but never more than one CU below what the monitor approved.
  Resources target = Resources::Min(desired, approved);
  target = Resources::Max(target, Resources::SaturatingSub(approved, config_->compute_unit));
  if (target == approved) return std::nullopt;
  // Upscale notifications take priority; one monitor request at a time.
  if (upscale_planned || monitor_.ongoing) return std::nullopt;
  if (monitor_.downscale_failure) {
    const absl::Time end =
        *monitor_.downscale_failure + config_->timings.monitor_retry_failed_request;
    if (end > now) {
      MinUntil(until, end);
      return std::nullopt;
    }
  }
  return MonitorDownscale{approved, target};
}

ActionSet State::NextActions(absl::Time now) const {
  // Built in locals and returned in one piece: a default-made ActionSet (about 250 bytes) is
  // cleared first, which cost a sixth of a call (core_bench BM_NextActionsIdle: 42.5 ns to 35.4).
  std::optional<absl::Time> until;
  const Adjusted desired = ComputeDesired(now, &until);
  std::optional<PermitRequest> scheduler_request = SchedulerAction(now, desired.resources, &until);
  std::optional<Resources> scheduler_requested;
  if (scheduler_.ongoing) {
    scheduler_requested = scheduler_.last_request->resources;
  } else if (scheduler_request) {
    scheduler_requested = scheduler_request->target;
  }
  std::optional<VmResize> vm_resize = VmAction(now, desired.resources, scheduler_requested, &until);
  std::optional<MonitorUpscale> monitor_upscale =
      MonitorUpscaleAction(now, desired.resources, &until);
  std::optional<MonitorDownscale> monitor_downscale =
      MonitorDownscaleAction(now, desired.resources, monitor_upscale.has_value(), &until);
  return ActionSet{.id = generation_,
                   .wait = WaitUntil(until, now),
                   .scheduler_request = scheduler_request,
                   .vm_resize = vm_resize,
                   .monitor_upscale = monitor_upscale,
                   .monitor_downscale = monitor_downscale};
}

// --- inputs ---

void State::RecomputeGoal() {
  ComputeGoal(config_->scaling, config_->compute_unit,
              system_metrics_ ? &*system_metrics_ : nullptr,
              lfc_metrics_ ? &*lfc_metrics_ : nullptr, goal_);
  // Stale metrics count as missing for shrinking (and for the stabilization history).
  if (metrics_stale_) goal_.has_all_metrics = false;
}

bool State::RefreshGoal(absl::Time now) {
  const uint32_t goal_cu = goal_.goal_cu;
  const Signal decided_by = goal_.decided_by;
  const bool has_all_metrics = goal_.has_all_metrics;
  RecomputeGoal();
  // A goal of the same size, signal and completeness leaves DesiredResources as it was: the
  // history below only moves its last sample of that size forward, which matters only once the
  // goal changes.
  const bool changed = goal_.goal_cu != goal_cu || goal_.decided_by != decided_by ||
                       goal_.has_all_metrics != has_all_metrics;
  const absl::Duration window = config_->scaling.downscale_stabilization_window;
  if (window <= absl::ZeroDuration() || !goal_.has_all_metrics) return changed;
  while (!goal_history_.empty() && goal_history_.front().at + window <= now) {
    goal_history_.pop_front();
  }
  while (!goal_history_.empty() && goal_history_.back().goal_cu <= goal_.goal_cu) {
    goal_history_.pop_back();
  }
  goal_history_.push_back({now, goal_.goal_cu});
  return changed;
}

void State::UpdateBounds(Bounds bounds) {
  bounds_ = bounds;
  DesiredChanged();
}

void State::UpdateScalingConfig(const ScalingConfig& scaling) {
  // A copy of its own (the old one may be shared; `scaling` may be part of it).
  auto config = std::make_shared<StateConfig>(*config_);
  config->scaling = scaling;
  config_ = std::move(config);
  // Do not act on LFC data collected before the LFC signal was switched off and on again.
  if (!config_->scaling.enable_lfc_metrics) lfc_metrics_.reset();
  if (config_->scaling.downscale_stabilization_window <= absl::ZeroDuration()) {
    goal_history_.clear();
  }
  RecomputeGoal();
  DesiredChanged();
}

void State::UpdateTimings(const Timings& timings) {
  auto config = std::make_shared<StateConfig>(*config_);
  config->timings = timings;
  config_ = std::move(config);
  Changed();  // the waits the next advice names change; the desired size does not
}

void State::SetMigrating(bool migrating) {
  migrating_ = migrating;
  DesiredChanged();
}

void State::UpdateSystemMetrics(absl::Time now, const SystemMetrics& metrics) {
  system_metrics_ = metrics;
  const bool was_stale = metrics_stale_;
  metrics_stale_ = false;
  if (RefreshGoal(now) || was_stale) {
    DesiredChanged();
  } else {
    Changed();
  }
}

void State::UpdateLfcMetrics(absl::Time now, const LfcMetrics& metrics) {
  lfc_metrics_ = metrics;
  if (RefreshGoal(now)) {
    DesiredChanged();
  } else {
    Changed();
  }
}

void State::MarkMetricsStale() {
  metrics_stale_ = true;
  RecomputeGoal();
  DesiredChanged();
}

void State::ClearMetrics() {
  system_metrics_.reset();
  lfc_metrics_.reset();
  metrics_stale_ = false;
  RecomputeGoal();
  DesiredChanged();
}

// --- scheduler ---

void State::SchedulerRequestStarted(absl::Time now, Resources target) {
  scheduler_.last_request = TimedResources{now, target};
  scheduler_.ongoing = true;
  Changed();
}

absl::Status State::SchedulerRequestSucceeded(absl::Time now, Resources permit) {
  if (!scheduler_.ongoing) {
    return absl::FailedPreconditionError("scheduler permit without a request in flight");
  }
  scheduler_.ongoing = false;
  Changed();
  const Resources asked = scheduler_.last_request->resources;
  absl::Status invalid;
  if (permit.milli_cpu <= 0 || permit.memory_bytes <= 0) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("invalid permit ", permit.ToString(), ": every resource must be > 0"));
  } else if (permit.AnyGreaterThan(asked)) {
    invalid = absl::InvalidArgumentError(absl::StrCat(
        "invalid permit ", permit.ToString(), ": more than requested (", asked.ToString(), ")"));
  } else if (Resources in_use = Resources::Max(current_, vm_.ongoing.value_or(current_));
             permit.AnyLessThan(in_use)) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("invalid permit ", permit.ToString(), ": less than the VM uses (",
                     in_use.ToString(), ", counting a resize in flight)"));
  }
  if (!invalid.ok()) {
    scheduler_.last_failure = now;
    return invalid;
  }
  scheduler_.permit = permit;
  scheduler_.last_failure.reset();
  return absl::OkStatus();
}

void State::SchedulerRequestFailed(absl::Time now) {
  scheduler_.ongoing = false;
  scheduler_.last_failure = now;
  // The scheduler may have taken the request and lost only its answer: a report of a decrease
  // may have lowered the permit there. Until an answer says otherwise, the permit is the lower
  // of the two (growing back to the old one unasked could take what the scheduler gave away).
  if (scheduler_.permit && scheduler_.last_request) {
    scheduler_.permit = Resources::Min(*scheduler_.permit, scheduler_.last_request->resources);
  }
  Changed();
}

std::optional<Resources> State::scheduler_request_in_flight() const {
  if (!scheduler_.ongoing) return std::nullopt;
  return scheduler_.last_request->resources;
}

// --- VM ---

void State::VmResizeStarted(absl::Time, Resources target) {
  vm_.ongoing = target;
  Changed();
}

void State::VmResizeSucceeded(absl::Time, Resources reached) {
  vm_.ongoing.reset();
  vm_.last_failure.reset();
  current_ = reached;
  DesiredChanged();
}

void State::VmResizeFailed(absl::Time now, std::optional<Resources> now_at) {
  vm_.ongoing.reset();
  vm_.last_failure = now;
  if (now_at) current_ = *now_at;
  DesiredChanged();
}

// --- monitor ---

void State::MonitorConnected(absl::Time) {
  monitor_ = MonitorSide{};
  // A new monitor starts from the VM's size; while a resize is in flight, from what the VM keeps
  // either way (the reference takes the size before a shrink ends and calls it racy).
  monitor_.approved = vm_.ongoing ? Resources::Min(current_, *vm_.ongoing) : current_;
  DesiredChanged();
}

void State::MonitorDisconnected() {
  monitor_ = MonitorSide{};
  DesiredChanged();
}

void State::MonitorUpscaleRequested(absl::Time now) {
  monitor_.requested_upscale = TimedResources{now, monitor_.approved.value_or(current_)};
  DesiredChanged();
}

void State::MonitorUpscaleStarted(absl::Time, Resources target) {
  monitor_.ongoing = MonitorSide::Ongoing{MonitorSide::Kind::kUpscale, target};
  monitor_.upscale_failure.reset();
  Changed();
}

void State::MonitorUpscaleSucceeded(absl::Time) {
  if (!monitor_.ongoing || monitor_.ongoing->kind != MonitorSide::Kind::kUpscale) return;
  monitor_.approved = monitor_.ongoing->requested;
  monitor_.ongoing.reset();
  Changed();
}

void State::MonitorUpscaleFailed(absl::Time now) {
  if (!monitor_.ongoing || monitor_.ongoing->kind != MonitorSide::Kind::kUpscale) return;
  monitor_.ongoing.reset();
  monitor_.upscale_failure = now;
  Changed();
}

void State::MonitorDownscaleStarted(absl::Time, Resources target) {
  monitor_.ongoing = MonitorSide::Ongoing{MonitorSide::Kind::kDownscale, target};
  monitor_.downscale_failure.reset();
  Changed();
}

void State::MonitorDownscaleApproved(absl::Time) {
  if (!monitor_.ongoing || monitor_.ongoing->kind != MonitorSide::Kind::kDownscale) return;
  monitor_.approved = monitor_.ongoing->requested;
  monitor_.ongoing.reset();
  Changed();
}

void State::MonitorDownscaleDenied(absl::Time now) {
  if (!monitor_.ongoing || monitor_.ongoing->kind != MonitorSide::Kind::kDownscale) return;
  monitor_.denied_downscale =
      MonitorSide::Denied{now, monitor_.approved.value_or(current_), monitor_.ongoing->requested};
  monitor_.ongoing.reset();
  DesiredChanged();
}

void State::MonitorDownscaleFailed(absl::Time now) {
  if (!monitor_.ongoing || monitor_.ongoing->kind != MonitorSide::Kind::kDownscale) return;
  monitor_.ongoing.reset();
  monitor_.downscale_failure = now;
  Changed();
}

std::optional<Resources> State::monitor_request_in_flight() const {
  if (!monitor_.ongoing) return std::nullopt;
  return monitor_.ongoing->requested;
}

}  // namespace autoscale::core
