#include "autoscale/core/executor.h"

#include "absl/strings/str_cat.h"

namespace autoscale::core {

const char* OperationKindName(OperationKind kind) {
  switch (kind) {
    case OperationKind::kSchedulerRequest:
      return "scheduler_request";
    case OperationKind::kVmResize:
      return "vm_resize";
    case OperationKind::kMonitorUpscale:
      return "monitor_upscale";
    case OperationKind::kMonitorDownscale:
      return "monitor_downscale";
  }
  return "?";
}

const char* GrantName(Grant grant) {
  switch (grant) {
    case Grant::kNoGrowth:
      return "no_growth";
    case Grant::kFull:
      return "full";
    case Grant::kPartial:
      return "partial";
    case Grant::kDenied:
      return "denied";
  }
  return "?";
}

namespace {

// The first operation of `a` (advised at a.id), in the order of Advise.
Advice First(const State& state, const ActionSet& a) {
  // Each path builds only what it returns: the simulator asks about twice per VM-step, and most
  // advice starts nothing.
  if (a.scheduler_request) {
    const PermitRequest& r = *a.scheduler_request;
    return {Operation{.kind = OperationKind::kSchedulerRequest,
                      .generation = a.id,
                      .current = r.last_permit.value_or(state.current()),
                      .target = r.target,
                      .last_permit = r.last_permit,
                      .metrics = r.metrics},
            a.wait};
  }
  if (a.vm_resize) {
    return {Operation{.kind = OperationKind::kVmResize,
                      .generation = a.id,
                      .current = a.vm_resize->current,
                      .target = a.vm_resize->target},
            a.wait};
  }
  if (a.monitor_upscale) {
    return {Operation{.kind = OperationKind::kMonitorUpscale,
                      .generation = a.id,
                      .current = a.monitor_upscale->current,
                      .target = a.monitor_upscale->target},
            a.wait};
  }
  if (a.monitor_downscale) {
    return {Operation{.kind = OperationKind::kMonitorDownscale,
                      .generation = a.id,
                      .current = a.monitor_downscale->current,
                      .target = a.monitor_downscale->target},
            a.wait};
  }
  return {std::nullopt, a.wait};
}

}  // namespace

Advice Advise(const State& state, absl::Time now) { return First(state, state.NextActions(now)); }

std::optional<absl::Duration> StartAll(State& state, absl::Time now,
                                       absl::FunctionRef<void(const Operation&)> started) {
  for (;;) {
    ActionSet a = state.NextActions(now);
    if (a.scheduler_request) {
      const Advice first = First(state, a);
      Start(state, now, *first.operation);
      started(*first.operation);
      // The rest of `a` holds at the state's new generation.
      a.scheduler_request.reset();
      a.id = state.generation();
    }
    // Most advice starts nothing (the simulator asks about twice per VM-step).
    if (!a.vm_resize && !a.monitor_upscale && !a.monitor_downscale) return a.wait;
    const Advice next = First(state, a);
    if (!next.operation) return next.wait;
    Start(state, now, *next.operation);
    started(*next.operation);
  }
}

bool Start(State& state, absl::Time now, const Operation& op) {
  if (op.generation != state.generation()) return false;
  switch (op.kind) {
    case OperationKind::kSchedulerRequest:
      state.SchedulerRequestStarted(now, op.target);
      break;
    case OperationKind::kVmResize:
      state.VmResizeStarted(now, op.target);
      break;
    case OperationKind::kMonitorUpscale:
      state.MonitorUpscaleStarted(now, op.target);
      break;
    case OperationKind::kMonitorDownscale:
      state.MonitorDownscaleStarted(now, op.target);
      break;
  }
  return true;
}

namespace {

void Failed(State& state, absl::Time now, OperationKind kind, std::optional<Resources> vm_at) {
  switch (kind) {
    case OperationKind::kSchedulerRequest:
      state.SchedulerRequestFailed(now);
      break;
    case OperationKind::kVmResize:
      state.VmResizeFailed(now, vm_at);
      break;
    case OperationKind::kMonitorUpscale:
      state.MonitorUpscaleFailed(now);
      break;
    case OperationKind::kMonitorDownscale:
      state.MonitorDownscaleFailed(now);
      break;
  }
}

}  // namespace

absl::Status Finish(State& state, absl::Time now, OperationKind kind, const OperationResult& r) {
  using Kind = OperationResult::Kind;
  const bool needs_resources =
      kind == OperationKind::kSchedulerRequest || kind == OperationKind::kVmResize;
  if ((r.kind == Kind::kDenied && kind != OperationKind::kMonitorDownscale) ||
      (r.kind == Kind::kDone && needs_resources && !r.resources)) {
    Failed(state, now, kind, std::nullopt);
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", r.kind == Kind::kDenied ? "denial" : "success without resources", " does not fit a ",
        OperationKindName(kind), "; recorded as a failed request"));
  }
  if (r.kind == Kind::kFailed) {
    Failed(state, now, kind, kind == OperationKind::kVmResize ? r.resources : std::nullopt);
    return absl::OkStatus();
  }
  switch (kind) {
    case OperationKind::kSchedulerRequest:
      return state.SchedulerRequestSucceeded(now, *r.resources);
    case OperationKind::kVmResize:
      state.VmResizeSucceeded(now, *r.resources);
      break;
    case OperationKind::kMonitorUpscale:
      state.MonitorUpscaleSucceeded(now);
      break;
    case OperationKind::kMonitorDownscale:
      if (r.kind == Kind::kDenied) {
        state.MonitorDownscaleDenied(now);
      } else {
        state.MonitorDownscaleApproved(now);
      }
      break;
  }
  return absl::OkStatus();
}

Grant ClassifyGrant(const Resources& before, const Resources& asked, const Resources& permit) {
  if (!asked.AnyGreaterThan(before)) return Grant::kNoGrowth;
  if (permit == asked) return Grant::kFull;
  if (permit.AnyGreaterThan(before)) return Grant::kPartial;
  return Grant::kDenied;
}

}  // namespace autoscale::core
