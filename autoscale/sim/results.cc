// Accounting and results: what each VM had against its demand and how fast it got what it
// wanted, the nodes' samples, and the Results of a run.
#include <algorithm>
#include <cmath>

#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/internal/fleet.h"
#include "autoscale/sim/internal/share.h"
#include "autoscale/sim/simulation.h"

namespace autoscale::sim {

void Simulation::Account(Vm& vm, int64_t t) {
  const int64_t dt = t - vm.accounted_to;
  if (dt <= 0) return;
  const double hours = static_cast<double>(dt) / 3.6e12;
  const core::Resources& have = vm.state.current();
  const core::Resources& cu = config_.compute_unit;
  vm.cu_hours_allocated += LargerShare(have, cu) * hours;
  vm.cu_hours_demand += LargerShare(vm.demand.milli_cpu, vm.demand.memory_bytes, cu) * hours;
  if (vm.short_cpu || vm.short_memory) vm.under_ns += dt;
  if (vm.short_cpu) vm.cpu_short_ns += dt;
  if (vm.short_memory) vm.memory_short_ns += dt;
  vm.accounted_to = t;
}

void Simulation::CheckReaction(Vm& vm, absl::Time now) {
  // A migrating VM is not resized, so the core wants no more than it has: an open wish stays
  // open, and the migration counts in its reaction time.
  if (vm.state.migrating()) return;
  const int64_t t = absl::ToInt64Nanoseconds(now - start_);
  const core::Resources desired = vm.state.DesiredResources(now).resources;
  const core::Resources& have = vm.state.current();
  if (!desired.AnyGreaterThan(have)) {
    if (vm.wish) {
      ++vm.result.reactions_abandoned;
      vm.wish.reset();
    }
  } else if (!vm.wish) {
    vm.wish.emplace(t, desired);
  } else {
    // The wish shrank: meeting the smaller one counts.
    vm.wish->second = core::Resources::Min(vm.wish->second, desired);
  }
}

void Simulation::SampleNodes(int64_t t) {
  NodeSample s;
  s.time = absl::Nanoseconds(t);
  s.reserved.resize(shards_.size());
  s.allocated.resize(shards_.size());
  s.demand.resize(shards_.size());
  for (const ledger::NodeInfo& n : ledger_->ListNodes())
    s.reserved[shard_by_node_.at(n.name)] = n.reserved;
  // In memory order: a large fleet does not fit in the cache.
  for (const Vm& vm_ref : storage_) {
    const Vm* vm = &vm_ref;
    s.allocated[vm->shard] = s.allocated[vm->shard] + vm->state.current();
    DemandTotal& d = s.demand[vm->shard];
    d.milli_cpu += static_cast<double>(vm->demand.milli_cpu);
    d.memory_bytes += static_cast<double>(vm->demand.memory_bytes);
  }
  node_series_.push_back(std::move(s));
}

Results Simulation::TakeResults() {
  const int64_t end = next_step_ * step_ns_;
  Results r;
  r.duration = absl::Nanoseconds(end);
  r.step = config_.step;
  r.compute_unit = config_.compute_unit;
  r.bounds = config_.bounds;
  r.watermark = config_.watermark;
  r.monitor = config_.monitor;
  for (const auto& s : shards_) {
    r.vm_steps += s->vm_steps;
    r.node_names.push_back(s->node);
    r.node_totals.push_back(config_.node_capacity);
  }
  r.vms.reserve(vms_.size());
  for (Vm* vm : vms_) {
    Account(*vm, end);
    VmResult v = std::move(vm->result);
    v.node = shards_[vm->shard]->node;
    v.final_size = vm->state.current();
    v.cu_hours_allocated = vm->cu_hours_allocated;
    v.cu_hours_demand = vm->cu_hours_demand;
    v.peak_demand = vm->peak_demand;
    v.static_peak_cu = static_cast<uint32_t>(
        std::clamp(std::ceil(vm->peak_demand_cu - 1e-9), static_cast<double>(config_.bounds.min_cu),
                   static_cast<double>(config_.bounds.max_cu)));
    v.under_provisioned = absl::Nanoseconds(vm->under_ns);
    v.cpu_short = absl::Nanoseconds(vm->cpu_short_ns);
    v.memory_short = absl::Nanoseconds(vm->memory_short_ns);
    const int64_t still = vm->migration_started >= 0 ? end - vm->migration_started : 0;
    v.migrating = absl::Nanoseconds(vm->migrating_ns + still);
    r.vms.push_back(std::move(v));
  }
  r.node_series = std::move(node_series_);
  r.vm_series = std::move(vm_series_);
  return r;
}

}  // namespace autoscale::sim
