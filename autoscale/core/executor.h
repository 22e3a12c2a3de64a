// Carrying out a State's advice: which action of an ActionSet to start, marking it started, and
// feeding its result back. The agent's runner and the simulator both drive a State through these
// functions, so they read an ActionSet the same way:
//
//   - One action starts per advice. Starting any changes the state, so the rest of the ActionSet
//     may no longer hold (a monitor upscale advised beside a VM resize would announce a size the
//     resize is changing): the driver asks again at once. Of the actions advised together, the
//     scheduler request starts first, then the VM resize, then the monitor request. (Starting a
//     scheduler request is the exception: the rest of its ActionSet holds, StartAll below.)
//   - An operation starts only if the state has not changed since it was advised (its
//     `generation`); otherwise the advice is stale, nothing starts, and the driver asks again.
//   - With nothing to start, the driver asks again after `wait`, or as soon as the state changes.
//   - Each result goes back through Finish, which makes the State call that kind of result calls
//     for; one request of each kind is in flight at most.
//
// A driver that holds the state throughout (the simulator):
//
//   for (;;) {
//     Advice a = StartNext(state, now);
//     if (!a.operation) break;  // ask again after a.wait (if any), or when the state changes
//     ... send *a.operation; when its result comes: Finish(state, then, kind, result)
//   }
//
// or, the same operations with fewer questions to the state:
//
//   std::optional<absl::Duration> wait = StartAll(state, now, [&](const Operation& op) { ... });
//
// A threaded driver (one lock around the state; the agent's runner, one executor per kind):
//
//   loop:      Advice a = Advise(state, now); give a.operation to the executor of its kind;
//              sleep until the state changes or a.wait passes
//   executor:  if (!Start(state, now, op)) continue;  // stale: the loop advises afresh
//              unlock; carry it out; lock; Finish(state, now, op.kind, result)
#pragma once

#include <cstdint>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/resources.h"
#include "autoscale/core/state.h"

namespace autoscale::core {

enum class OperationKind : uint8_t {
  kSchedulerRequest,  // ask the scheduler for `target` (a growth), or report it
  kVmResize,          // resize the VM from `current` to `target`
  kMonitorUpscale,    // tell the monitor the VM has `target` now
  kMonitorDownscale,  // ask the monitor whether the VM may shrink to `target`
};
const char* OperationKindName(OperationKind kind);

// One action of an ActionSet, to carry out.
struct Operation {
  OperationKind kind = OperationKind::kSchedulerRequest;
  // The state's generation when it was advised.
  uint64_t generation = 0;
  // Scheduler request: what the VM may use before the answer (its permit; before the first
  // permit, its size). VM resize: the VM's size. Monitor: what the monitor last approved.
  Resources current;
  Resources target;
  // Scheduler requests only: what to send along.
  std::optional<Resources> last_permit{};
  std::optional<SystemMetrics> metrics{};
};

struct Advice {
  // The operation to start now, if any.
  std::optional<Operation> operation;
  // Ask again after this long even if nothing changes (absent: only on a change).
  std::optional<absl::Duration> wait;
};

// What to do next: the first action of state.NextActions(now) in the order above (scheduler,
// VM, monitor), not started yet.
Advice Advise(const State& state, absl::Time now);

// Starts `op` (the `...Started` call of its kind) if the state is still at the generation it was
// advised at, and returns true; returns false, changing nothing, if the advice is stale.
bool Start(State& state, absl::Time now, const Operation& op);

// Advise, then Start what it advises: for a driver that holds the state in between, so the
// advice is never stale. `operation`, if any, has been started. (Inline: the simulator calls it
// about twice per VM-step.)
inline Advice StartNext(State& state, absl::Time now) {
  Advice a = Advise(state, now);
  if (a.operation) Start(state, now, *a.operation);
  return a;
}

// The StartNext loop above in one call: starts every operation the state advises now, in the same
// order, calling `started` with each (it must not change the state), and returns the wait of the
// last advice. It asks the state again after each operation but a scheduler request: starting one
// changes no other advice (the VM resize beside it is measured against the request it starts,
// and the rest does not depend on the scheduler), so the rest of that ActionSet is current.
// state_property_test checks that after every scheduler request started.
std::optional<absl::Duration> StartAll(State& state, absl::Time now,
                                       absl::FunctionRef<void(const Operation&)> started);

// How an operation ended, as its driver saw it.
struct OperationResult {
  enum class Kind : uint8_t {
    // Scheduler: answered with the permit `resources`. VM: resized, reaching `resources` (it may
    // fall short of the target). Monitor: acknowledged the upscale, or approved the downscale.
    kDone,
    // The monitor refused the downscale.
    kDenied,
    // No answer, an error, a timeout. For a VM resize, `resources` is where the failure left the
    // VM, if known.
    kFailed,
  };
  Kind kind = Kind::kFailed;
  std::optional<Resources> resources;

  static OperationResult Permit(Resources permit) { return {Kind::kDone, permit}; }
  static OperationResult Resized(Resources reached) { return {Kind::kDone, reached}; }
  static OperationResult Done() { return {Kind::kDone, std::nullopt}; }
  static OperationResult Denied() { return {Kind::kDenied, std::nullopt}; }
  static OperationResult Failed(std::optional<Resources> vm_at = std::nullopt) {
    return {Kind::kFailed, vm_at};
  }
};

// Feeds the result of the operation of `kind` in flight back into the state (the `...Succeeded`,
// `...Failed`, `...Approved` or `...Denied` call for it). Errors: the state refused the
// scheduler's permit (State::SchedulerRequestSucceeded says why; it counts as a failed request),
// or the result does not fit the kind (a denial of anything but a downscale, a permit or a
// resize without its resources): that is recorded as a failure of the operation, so the state
// never waits for a result that will not come.
absl::Status Finish(State& state, absl::Time now, OperationKind kind,
                    const OperationResult& result);

// What the scheduler's answer to a request did for growth.
enum class Grant : uint8_t {
  kNoGrowth,  // the request asked for nothing beyond `before` (a report, or a periodic request)
  kFull,      // the permit is what was asked
  kPartial,   // more than before in some resource, less than asked
  kDenied,    // nothing beyond before
};
const char* GrantName(Grant grant);

// `before` is what the VM could use when it asked (Operation::current), `asked` the request's
// target.
Grant ClassifyGrant(const Resources& before, const Resources& asked, const Resources& permit);

}  // namespace autoscale::core
