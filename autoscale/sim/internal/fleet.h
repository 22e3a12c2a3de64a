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

#include "autoscale/core/executor.h"
#include "autoscale/core/resources.h"
#include "autoscale/core/state.h"
#include "autoscale/sim/internal/monitor_model.h"
#include "autoscale/sim/internal/random.h"
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

// One VM: what a step touches comes first and ends with the core's state, so that the step loop
// can prefetch exactly that (StepPrefix); what results and rare events touch comes after.
struct Simulation::Vm {
  Vm(uint32_t i, std::string n, std::unique_ptr<Workload> w, const SimConfig& config,
     core::Resources initial)
      : index(i),
        rng(StreamSeed(config.seed, i, kAgentStream)),
        workload(std::move(w)),
        monitor(config.monitor),
        state(core::StateConfig{config.compute_unit, config.scaling, config.timings}, initial,
              config.bounds),
        name(std::move(n)) {}

  // Whether the VM has less than its demand now; counts the memory shortfalls that begin.
  void UpdateShortage() {
    const core::Resources& have = state.current();
    short_cpu = demand.milli_cpu > have.milli_cpu;
    const bool memory = demand.memory_bytes > have.memory_bytes;
    if (memory && !short_memory) ++result.memory_shortfalls;
    short_memory = memory;
  }

  // Bytes from the start of the object that every step reads.
  size_t StepPrefix() const {
    return static_cast<size_t>(reinterpret_cast<const char*>(&state) + sizeof(state) -
                               reinterpret_cast<const char*>(this));
  }

  const uint32_t index;
  uint32_t shard = 0;
  Rng rng;
  std::unique_ptr<Workload> workload;
  VmSeries* series = nullptr;

  // The workload and the guest.
  Demand demand;
  double load1 = 0, load5 = 0;
  int64_t metrics_phase = 0;
  // The memory in use at the last step, for the monitor's watcher.
  int64_t used = 0;
  int64_t wake_at = -1;
  uint64_t driven_generation = 0;

  // Accounting up to `accounted_to` (ns since the start).
  int64_t accounted_to = 0;
  bool short_cpu = false, short_memory = false;
  int64_t under_ns = 0, cpu_short_ns = 0, memory_short_ns = 0;
  double cu_hours_allocated = 0, cu_hours_demand = 0, peak_demand_cu = 0;
  Demand peak_demand;
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

  MonitorModel monitor;
  core::State state;

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
};

struct Simulation::Migration {
  uint64_t id;
  uint32_t vm;
  uint32_t target;
  int64_t end;
  bool ok;
};

}  // namespace autoscale::sim
