// The simulation's state of each VM and node, shared by the files that implement Simulation:
// simulation.cc (set-up, stepping and migrations), vm.cc (a VM's step and its agent's executor),
// results.cc (accounting and results).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/resources.h"
#include "autoscale/core/state.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/internal/monitor_model.h"
#include "autoscale/sim/internal/random.h"
#include "autoscale/sim/internal/working_set_model.h"
#include "autoscale/sim/simulation.h"
#include "autoscale/sim/workload.h"

namespace autoscale::sim {

// Events in a node's queue.
enum EventKind : uint8_t {
  kWake,            // the core asked to be called again now
  kSchedulerReply,  // the answer to the VM's scheduler request arrives
  kResizeDone,      // the VM's resize ends
  kMonitorReply,    // the monitor answers the agent
  kMonitorRequest,  // the monitor's upscale request arrives at the agent
};

struct Event {
  int64_t t;     // nanoseconds since the start
  uint64_t seq;  // order of scheduling within the node: ties in time keep it
  uint32_t vm;
  uint8_t kind;
};

// The comparison that makes std::push_heap & co. a min-heap on (t, seq).
struct Later {
  bool operator()(const Event& a, const Event& b) const {
    return a.t != b.t ? a.t > b.t : a.seq > b.seq;
  }
};

// What decides a goal: its size, signal and completeness (what core::State's
// desired_generation() follows).
struct GoalKey {
  uint32_t goal_cu = 0;
  core::Signal decided_by = core::Signal::kNone;
  bool has_all_metrics = false;

  static GoalKey Of(const core::Goal& g) { return {g.goal_cu, g.decided_by, g.has_all_metrics}; }
  friend bool operator==(const GoalKey&, const GoalKey&) = default;
};

// A VM's Local File Cache pages and the latest LFC metrics its agent got (with
// scaling.enable_lfc_metrics only).
struct LfcState {
  explicit LfcState(double new_share, int64_t phase) : model(new_share), phase(phase) {}
  WorkingSetModel model;
  // The agent's LFC metrics are due at steps where (step + phase) is a multiple of their
  // interval's steps.
  int64_t phase;
  int64_t minute = -1;  // the last minute recorded in the model
  // The latest windows the agent got (waiting for the state if `pending`).
  bool received = false;
  bool pending = false;
  int64_t at = 0;
  core::LfcMetrics latest;
  core::LfcMetrics next;  // scratch for the windows being fetched
};

// One VM: what every step touches comes first (StepPrefix: the workload's output, the guest,
// the monitor, the accounting and what decides whether the agent must be asked); what the agent
// and rare events touch (its core::State, requests in flight, results) comes after and is read
// only in the steps and events that need it.
struct Simulation::Vm {
  Vm(uint32_t i, std::string n, std::unique_ptr<Workload> w, const SimConfig& config,
     std::shared_ptr<const core::StateConfig> state_config, core::Resources initial)
      : index(i),
        workload(std::move(w)),
        monitor(config.monitor),
        rng(StreamSeed(config.seed, i, kAgentStream)),
        state(std::move(state_config), initial, config.bounds),
        name(std::move(n)) {}

  // Whether the VM has less than its demand now; counts the memory shortfalls that begin.
  void UpdateShortage() {
    short_cpu = demand.milli_cpu > have.milli_cpu;
    const bool memory = demand.memory_bytes > have.memory_bytes;
    if (memory && !short_memory) ++result.memory_shortfalls;
    short_memory = memory;
  }

  // Whether the agent is asked at step time `t` whatever its metrics give: a timer of its state
  // is due, or its state changed since it was last asked.
  bool AgentDue(int64_t t) const { return undriven || (wake_at >= 0 && wake_at <= t); }

  // Bytes from the start of the object that every step reads.
  size_t StepPrefix() const {
    return static_cast<size_t>(reinterpret_cast<const char*>(&monitor) + sizeof(monitor) -
                               reinterpret_cast<const char*>(this));
  }

  // --- every step ---
  const uint32_t index;
  uint32_t shard = 0;
  std::unique_ptr<Workload> workload;
  // The workload and the guest.
  Demand demand;
  double load1 = 0, load5 = 0;
  int64_t metrics_phase = 0;
  // The memory in use at the last step, for the monitor's watcher.
  int64_t used = 0;
  // The VM's size (state.current(), copied whenever the agent's state may have changed it) and
  // its share of a compute unit.
  core::Resources have;
  double have_share = 0;

  // Accounting up to `accounted_to` (ns since the start).
  int64_t accounted_to = 0;
  bool short_cpu = false, short_memory = false;
  int64_t under_ns = 0, cpu_short_ns = 0, memory_short_ns = 0;
  double demand_share = 0;
  double cu_hours_allocated = 0, cu_hours_demand = 0, peak_demand_cu = 0;
  Demand peak_demand;

  // Whether the agent must be asked (Simulation::StepVm). The core's next timer (-1: none);
  // its state changed since it was last asked (a migration began or ended); the reaction check
  // is current until `reaction_until` unless the desired size's inputs changed since.
  int64_t wake_at = -1;
  bool undriven = true;
  bool reaction_fresh = false;
  int64_t reaction_until = 0;
  uint64_t reaction_generation = 0;  // the state's desired_generation() at the check
  // The goal the state has, and the latest metrics (waiting for the state if `metrics_pending`).
  GoalKey goal_key;
  bool metrics_received = false;
  bool metrics_pending = false;
  int64_t metrics_at = 0;
  core::SystemMetrics metrics;
  VmSeries* series = nullptr;
  MonitorModel monitor;

  // --- the agent and events ---
  Rng rng;
  // An upscale wish being served: since when, and the size that meets it.
  std::optional<std::pair<int64_t, core::Resources>> wish;
  // Requests in flight (the core allows one of each kind).
  std::optional<core::Resources> permit_reply;  // nullopt: the answer is lost
  core::Resources asked, permit_before;
  core::Resources resize_target;
  core::Resources monitor_target;
  bool resize_ok = true;
  core::OperationKind monitor_kind = core::OperationKind::kMonitorUpscale;
  bool monitor_ok = true;
  std::unique_ptr<LfcState> lfc;
  core::State state;
  // Where the ledger keeps the VM: its requests skip the lookups by name.
  ledger::VmHandle ledger_handle;

  // Cold.
  const std::string name;
  int64_t migration_started = -1;
  int64_t migrating_ns = 0;
  VmResult result;
};

struct Simulation::Shard {
  uint32_t index = 0;
  std::string node;
  // Its VMs in the order a step visits them: by address in the simulation's storage, which is
  // deterministic (the storage is laid out by VM index within the nodes they were placed on).
  std::vector<Vm*> vms;
  std::vector<Event> heap;
  uint64_t seq = 0;
  int64_t vm_steps = 0;
  int64_t agent_asks = 0;
  // The first error of its part of a node sample (none expected: its node is registered).
  absl::Status error;
};

struct Simulation::Migration {
  uint64_t id;
  uint32_t vm;
  uint32_t target;
  int64_t end;
  bool ok;
};

}  // namespace autoscale::sim
