// Accounting and results: what each VM had against its demand and how fast it got what it
// wanted, the nodes' samples, and the Results of a run.
#include <algorithm>
#include <cmath>
#include <limits>

#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/internal/fleet.h"
#include "autoscale/sim/internal/share.h"
#include "autoscale/sim/simulation.h"

namespace autoscale::sim {

void Simulation::Account(Vm& vm, int64_t t) {
  const int64_t dt = t - vm.accounted_to;
  if (dt <= 0) return;
  const double hours = static_cast<double>(dt) / 3.6e12;
  vm.cu_hours_allocated += vm.have_share * hours;
  vm.cu_hours_demand += vm.demand_share * hours;
  if (vm.short_cpu || vm.short_memory) vm.under_ns += dt;
  if (vm.short_cpu) vm.cpu_short_ns += dt;
  if (vm.short_memory) vm.memory_short_ns += dt;
  vm.accounted_to = t;
}

void Simulation::CheckReaction(Vm& vm, absl::Time now) {
  const int64_t t = absl::ToInt64Nanoseconds(now - start_);
  // What this check saw holds while the desired size's inputs do and until a timed adjustment
  // in it ends (Simulation::Receive skips the check until then).
  vm.reaction_generation = vm.state.desired_generation();
  vm.reaction_until = std::numeric_limits<int64_t>::max();
  // A migrating VM is not resized, so the core wants no more than it has: an open wish stays
  // open, and the migration counts in its reaction time.
  if (vm.state.migrating()) return;
  const core::Desired d = vm.state.DesiredResources(now);
  if (d.expires && *d.expires < absl::Nanoseconds(vm.reaction_until - t)) {
    vm.reaction_until = t + absl::ToInt64Nanoseconds(*d.expires);
  }
  const core::Resources& desired = d.resources;
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

void Simulation::StartNodeSample(int64_t t) {
  NodeSample& s = node_series_.emplace_back();
  s.time = absl::Nanoseconds(t);
  const size_t n = shards_.size();
  s.reserved.resize(n);
  s.allocated.resize(n);
  s.demand.resize(n);
  s.used.resize(n);
  s.shortage.resize(n);
}

absl::Status Simulation::SampleNode(const Shard& shard, NodeSample& s) const {
  // Only this node's own steps change its ledger entry and its VMs between steps, so its part of
  // the sample is the same whichever thread takes it, and when. Its VMs in the order of the
  // storage, as a walk over the whole fleet would add them.
  const uint32_t i = shard.index;
  ASSIGN_OR_RETURN(const ledger::NodeInfo node, ledger_->GetNode(shard.node));
  s.reserved[i] = node.reserved;
  for (const Vm* vm : shard.vms) {
    s.allocated[i] = s.allocated[i] + vm->have;
    const Demand& want = vm->demand;
    DemandTotal& d = s.demand[i];
    d.milli_cpu += static_cast<double>(want.milli_cpu);
    d.memory_bytes += static_cast<double>(want.memory_bytes);
    const core::Resources got = core::Resources::Min({want.milli_cpu, want.memory_bytes}, vm->have);
    DemandTotal& u = s.used[i];
    u.milli_cpu += static_cast<double>(got.milli_cpu);
    u.memory_bytes += static_cast<double>(got.memory_bytes);
    DemandTotal& lack = s.shortage[i];
    lack.milli_cpu += static_cast<double>(want.milli_cpu - got.milli_cpu);
    lack.memory_bytes += static_cast<double>(want.memory_bytes - got.memory_bytes);
  }
  return absl::OkStatus();
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
  r.scaling = config_.scaling;
  for (const auto& s : shards_) {
    r.vm_steps += s->vm_steps;
    r.agent_asks += s->agent_asks;
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
