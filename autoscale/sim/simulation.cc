// The simulation as a whole: placing the fleet, stepping the nodes' VMs and event queues on the
// thread pool, and what happens between steps (migrations, node samples, invariant checks).
// A VM's own step and its agent are in vm.cc; accounting and results in results.cc.
#include "autoscale/sim/simulation.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/goal.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/internal/config.h"
#include "autoscale/sim/internal/fleet.h"
#include "autoscale/sim/internal/share.h"
#include "autoscale/sim/internal/thread_pool.h"

namespace autoscale::sim {
namespace {

// Recorded series (a VM's, the nodes') keep at most about this many samples: a long run records
// every k-th step.
constexpr int64_t kMaxSeriesSamples = 50000;

// Starts loading `bytes` at `p` into the cache.
void Prefetch(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

}  // namespace

// --- set-up ---

Simulation::Simulation(const SimConfig& config)
    : config_(config),
      start_(kManualClockEpoch),
      start_unix_ns_(absl::ToUnixNanos(start_)),
      step_ns_(absl::ToInt64Nanoseconds(config.step)),
      steps_(config.duration / config.step),
      metrics_every_(config.metrics_interval / config.step),
      lfc_every_(config.lfc_metrics_interval / config.step),
      load1_decay_(std::exp(-absl::ToDoubleSeconds(config.step) / 60)),
      load5_decay_(std::exp(-absl::ToDoubleSeconds(config.step) / 300)),
      ledger_clock_(kManualClockEpoch) {
  ledger::LedgerOptions options;
  options.default_watermark = config.watermark;
  options.migration_policy = config.migration_policy;
  options.seed = config.seed;
  options.clock = &ledger_clock_;
  ledger_ = std::make_unique<ledger::Ledger>(std::move(options));
  const int threads = config.threads > 0
                          ? config.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  pool_ = std::make_unique<ThreadPool>(std::min(threads, config.nodes));
}

Simulation::~Simulation() = default;

absl::StatusOr<std::unique_ptr<Simulation>> Simulation::Create(const SimConfig& config,
                                                               std::vector<SimVm> vms) {
  RETURN_IF_ERROR(ValidateSimConfig(config));
  RETURN_IF_ERROR(ValidateForVms(config, vms.size()));
  std::unique_ptr<Simulation> sim(new Simulation(config));
  RETURN_IF_ERROR(sim->Place(std::move(vms)));
  return sim;
}

absl::Status Simulation::Place(std::vector<SimVm> vms) {
  const int digits = static_cast<int>(std::to_string(config_.nodes - 1).size());
  for (int n = 0; n < config_.nodes; ++n) {
    auto shard = std::make_unique<Shard>();
    shard->index = static_cast<uint32_t>(n);
    shard->node = absl::StrFormat("node-%0*d", digits, n);
    RETURN_IF_ERROR(
        ledger_->RegisterNode({.name = shard->node, .total = config_.node_capacity}).status());
    shards_.push_back(std::move(shard));
  }
  for (const auto& s : shards_) shard_by_node_[s->node] = s->index;

  const core::Resources& cu = config_.compute_unit;
  struct Placed {
    uint32_t shard;
    core::Resources initial;
    Demand first;
  };
  std::vector<Placed> placed;
  placed.reserve(vms.size());
  for (uint32_t i = 0; i < vms.size(); ++i) {
    SimVm& spec = vms[i];
    if (spec.workload == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("simulation: VM ", i, " has no workload"));
    }
    if (spec.name.empty()) spec.name = absl::StrCat("vm-", i);
    if (!vm_by_name_.emplace(spec.name, i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("simulation: VM name '", spec.name, "' given twice"));
    }
    // The VM starts at the size the core wants for its first demand.
    const Demand first = spec.workload->At(absl::ZeroDuration());
    const core::SystemMetrics m{.load_avg_1m = first.milli_cpu / 1000.0,
                                .load_avg_5m = first.milli_cpu / 1000.0,
                                .memory_usage_bytes = static_cast<double>(first.memory_bytes)};
    const uint32_t goal = std::clamp(core::ComputeGoal(config_.scaling, cu, &m, nullptr).goal_cu,
                                     config_.bounds.min_cu, config_.bounds.max_cu);
    const core::Resources initial = cu * goal;
    const ledger::PlaceVmRequest request{.name = spec.name,
                                         .bounds = config_.bounds,
                                         .compute_unit = cu,
                                         .initial = initial,
                                         .migratable = true};
    absl::StatusOr<ledger::Placement> p = absl::ResourceExhaustedError("");
    if (config_.placement == InitialPlacement::kSpread) {
      p = ledger_->PlaceVm(request, shards_[i % shards_.size()]->node);
    }
    if (!p.ok() && p.status().code() == absl::StatusCode::kResourceExhausted) {
      p = ledger_->PlaceVm(request);
    }
    if (!p.ok()) {
      return Annotate(p.status(), absl::StrCat("simulation: placing VM ", i, " of ", vms.size(),
                                               " (the fleet may be too small)"));
    }
    placed.push_back({shard_by_node_.at(p->node), initial, first});
  }

  // The VMs of a node lie next to each other in memory (until they migrate): a step walks
  // through a node's VMs, and a large fleet does not fit in the cache.
  std::vector<uint32_t> order(vms.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return placed[a].shard < placed[b].shard; });
  storage_.reserve(vms.size());
  vms_.resize(vms.size());
  // One copy of the agents' config for the whole fleet: each state would otherwise carry its own.
  const auto state_config = std::make_shared<const core::StateConfig>(
      core::StateConfig{config_.compute_unit, config_.scaling, config_.timings});
  for (uint32_t i : order) {
    const Placed& pl = placed[i];
    Vm& vm = storage_.emplace_back(i, vms[i].name, std::move(vms[i].workload), config_,
                                   state_config, pl.initial);
    vm.shard = pl.shard;
    vm.monitor.Start(pl.initial.memory_bytes);
    vm.state.MonitorConnected(start_);
    vm.load1 = vm.load5 = pl.first.milli_cpu / 1000.0;
    vm.demand = pl.first;
    vm.demand_share = LargerShare(pl.first.milli_cpu, pl.first.memory_bytes, cu);
    vm.have = pl.initial;
    vm.have_share = LargerShare(pl.initial, cu);
    vm.goal_key = GoalKey::Of(vm.state.goal());
    vm.metrics_phase = i % metrics_every_;
    if (config_.scaling.enable_lfc_metrics) {
      vm.lfc = std::make_unique<LfcState>(config_.lfc_new_page_share, i % lfc_every_);
    }
    vm.result.name = vm.name;
    vm.result.workload = vm.workload->kind();
    vm.result.initial = vm.result.peak_size = pl.initial;
    shards_[vm.shard]->vms.push_back(&vm);
    vms_[i] = &vm;
  }
  // Every step, or every k-th step of a long run.
  series_every_ = (steps_ + kMaxSeriesSamples - 1) / kMaxSeriesSamples;
  vm_series_.reserve(config_.series_vms.size());
  for (uint32_t v : config_.series_vms) {
    vm_series_.push_back({.vm = v});
    vm_series_.back().time.reserve(static_cast<size_t>(steps_ / series_every_ + 1));
  }
  for (VmSeries& s : vm_series_) vms_[s.vm]->series = &s;
  node_sample_every_ = std::max(series_every_, config_.node_series_interval > absl::ZeroDuration()
                                                   ? StepsIn(config_.node_series_interval)
                                                   : steps_ / 720);
  return absl::OkStatus();
}

// --- running ---

int64_t Simulation::StepsIn(absl::Duration d) const {
  if (d >= config_.duration) return steps_;
  return std::max<int64_t>(1, absl::Ceil(d, config_.step) / config_.step);
}

absl::Status Simulation::Run(const std::function<void(double)>& progress) {
  return StepTo(steps_, progress);
}

absl::Status Simulation::RunUntil(absl::Duration t) {
  const int64_t step = std::min(steps_, absl::Ceil(t, config_.step) / config_.step);
  return StepTo(step, {});
}

absl::Duration Simulation::now() const { return config_.step * next_step_; }

const ledger::Ledger& Simulation::ledger() const { return *ledger_; }
const core::State& Simulation::vm_state(uint32_t vm) const { return vms_.at(vm)->state; }
size_t Simulation::vm_count() const { return vms_.size(); }

absl::Status Simulation::StepTo(int64_t last, const std::function<void(double)>& progress) {
  const int64_t check_every = StepsIn(config_.migration_check_interval);
  const int64_t progress_every = std::max<int64_t>(1, steps_ / 400);
  std::vector<Shard*> free, linked;
  while (next_step_ < last) {
    RETURN_IF_ERROR(Serial(next_step_));
    if (next_step_ >= next_migration_check_) next_migration_check_ = next_step_ + check_every;
    // Run the nodes on their own until something needs them all at once.
    int64_t end = std::min({last, next_migration_check_, next_node_sample_});
    if (progress) end = std::min(end, (next_step_ / progress_every + 1) * progress_every);
    if (config_.check_invariants) end = next_step_ + 1;
    end = std::max(end, next_step_ + 1);
    const int64_t first = next_step_;
    // A migration that ends within the run links its two nodes: they step one step at a time,
    // each end between two of their steps, as Serial would. Every other node runs all the steps
    // at once (a large fleet's VMs do not fit in the cache: one pass over a node's VMs for several
    // steps instead of one pass over the whole fleet per step). Nodes meet only in migrations,
    // so which nodes run first changes nothing.
    std::vector<bool> is_linked(shards_.size(), false);
    for (const Migration& m : migrations_) {
      if (EndStep(m) < end) is_linked[vms_[m.vm]->shard] = is_linked[m.target] = true;
    }
    free.clear();
    linked.clear();
    for (const auto& s : shards_) (is_linked[s->index] ? linked : free).push_back(s.get());
    // Threads take runs of neighbouring nodes, a few per thread: fewer claims, and neighbouring
    // nodes (whose ledger entries may share cache lines) mostly on one thread.
    const bool sample = sample_pending_;
    const size_t chunks = std::min(free.size(), 8 * pool_->threads());
    pool_->For(chunks, [&](size_t c) {
      for (size_t i = c * free.size() / chunks; i < (c + 1) * free.size() / chunks; ++i) {
        Shard& shard = *free[i];
        if (sample) shard.error.Update(SampleNode(shard, node_series_.back()));
        RunShard(shard, first, end);
      }
    });
    for (int64_t k = first; k < end && !linked.empty(); ++k) {
      if (k > first) RETURN_IF_ERROR(EndMigrations(k));
      pool_->For(linked.size(), [&](size_t i) {
        Shard& shard = *linked[i];
        if (sample && k == first) shard.error.Update(SampleNode(shard, node_series_.back()));
        RunShard(shard, k, k + 1);
      });
    }
    if (sample) {
      sample_pending_ = false;
      for (const auto& s : shards_) RETURN_IF_ERROR(s->error);
    }
    next_step_ = end;
    if (progress) progress(static_cast<double>(next_step_) / static_cast<double>(steps_));
  }
  // Metrics that wait reach the states, so that vm_state() shows them.
  for (Vm& vm : storage_) Deliver(vm);
  if (config_.check_invariants) {
    RETURN_IF_ERROR(ledger_->CheckInvariants());
    RETURN_IF_ERROR(CheckConservation(next_step_ * step_ns_));
  }
  return absl::OkStatus();
}

int64_t Simulation::EndStep(const Migration& m) const { return (m.end + step_ns_ - 1) / step_ns_; }

absl::Status Simulation::EndMigrations(int64_t step) {
  const int64_t t = step * step_ns_;
  ledger_clock_.AdvanceTo(At(t));

  // Migrations that ended, in the order they ended.
  std::sort(migrations_.begin(), migrations_.end(), [](const Migration& a, const Migration& b) {
    return a.end != b.end ? a.end < b.end : a.id < b.id;
  });
  size_t ended = 0;
  for (; ended < migrations_.size() && migrations_[ended].end <= t; ++ended) {
    const Migration& m = migrations_[ended];
    Vm& vm = *vms_[m.vm];
    RETURN_IF_ERROR(ledger_->EndMigration(m.id, vm.name, m.ok));
    // The agent hears of the end at this step.
    vm.migrating_ns += t - vm.migration_started;
    vm.migration_started = -1;
    Deliver(vm);
    if (m.ok) {
      ++vm.result.migrations;
      MoveVm(vm, m.target);
    } else {
      ++vm.result.migration_failures;
    }
    vm.state.SetMigrating(false);
    vm.undriven = true;  // the agent hears of it at the VM's next step
    Emit(vm, t, VmEvent::Kind::kMigrationEnded, vm.state.current(), m.ok);
  }
  migrations_.erase(migrations_.begin(), migrations_.begin() + static_cast<ptrdiff_t>(ended));
  return absl::OkStatus();
}

absl::Status Simulation::Serial(int64_t step) {
  const int64_t t = step * step_ns_;
  RETURN_IF_ERROR(EndMigrations(step));

  // New migration orders, node by node. Only a node above its watermark can have new ones (the
  // ledger orders migrations off a node when asked for that node's orders); the others' are
  // known already.
  if (step >= next_migration_check_) {
    // Which nodes are above their watermark: read-only, so the pool reads them all at once. The
    // orders below cannot put another node above its watermark (a migration goes only to a node
    // that stays under it; the simulator drains no node), so reading them first changes nothing.
    std::vector<absl::StatusOr<bool>> above(shards_.size(), false);
    pool_->For(shards_.size(), [&](size_t i) {
      absl::StatusOr<ledger::NodeInfo> node = ledger_->GetNode(shards_[i]->node);
      if (!node.ok()) {
        above[i] = node.status();
      } else {
        above[i] = (node->reserved - node->migrating).AnyGreaterThan(node->watermark);
      }
    });
    for (size_t i = 0; i < shards_.size(); ++i) {
      ASSIGN_OR_RETURN(const bool is_above, above[i]);
      if (!is_above) continue;
      const Shard* shard = shards_[i].get();
      const std::string& node = shard->node;
      ASSIGN_OR_RETURN(std::vector<ledger::MigrationOrder> orders, ledger_->MigrationOrders(node));
      const uint32_t source = shard->index;
      for (const ledger::MigrationOrder& o : orders) {
        auto vm_it = vm_by_name_.find(o.vm);
        auto target_it = shard_by_node_.find(o.target_node);
        if (vm_it == vm_by_name_.end() || vms_[vm_it->second]->shard != source ||
            target_it == shard_by_node_.end()) {
          return absl::InternalError(absl::StrCat("simulation: migration order ", o.id, " of VM ",
                                                  o.vm, " from node ", node, " to node ",
                                                  o.target_node, " does not match the fleet"));
        }
        Vm& vm = *vms_[vm_it->second];
        if (vm.migration_started >= 0) continue;  // ordered before
        vm.migration_started = t;
        Deliver(vm);
        vm.state.SetMigrating(true);
        vm.undriven = true;
        Emit(vm, t, VmEvent::Kind::kMigrationStarted, vm.state.current());
        const absl::Duration copy =
            absl::Seconds(static_cast<double>(vm.state.current().memory_bytes) /
                          static_cast<double>(config_.latencies.migration_bytes_per_second));
        migrations_.push_back({.id = o.id,
                               .vm = vm.index,
                               .target = target_it->second,
                               .end = t + Latency(vm, config_.latencies.migration_setup + copy),
                               .ok = !vm.rng.Bernoulli(config_.failures.migration)});
      }
    }
  }

  if (step >= next_node_sample_) {
    StartNodeSample(t);
    sample_pending_ = true;
    next_node_sample_ = step + node_sample_every_;
  }
  if (config_.check_invariants) {
    RETURN_IF_ERROR(Annotate(ledger_->CheckInvariants(),
                             absl::StrCat("at ", absl::FormatDuration(absl::Nanoseconds(t)))));
    RETURN_IF_ERROR(CheckConservation(t));
  }
  return absl::OkStatus();
}

void Simulation::RunShard(Shard& shard, int64_t first, int64_t end) {
  const std::vector<Vm*>& vms = shard.vms;
  const size_t n = vms.size();
  for (int64_t k = first; k < end; ++k) {
    const int64_t t = k * step_ns_;
    const absl::Time now = At(t);
    for (size_t i = 0; i < n; ++i) {
      // Load the next VMs while this one runs: the VM three ahead, and the workload of the next.
      if (i + 3 < n) Prefetch(vms[i + 3], vms[i + 3]->StepPrefix());
      if (i + 1 < n) Prefetch(vms[i + 1]->workload.get(), 128);
      // And the agent's state and ledger handle of the VM two ahead if its agent will be asked,
      // and then its ledger entry (the handle is loaded by now). In a run's first step every
      // state: the metrics reach it, and the node's VMs left the cache while the other nodes ran.
      if (i + 2 < n && (k == first || vms[i + 2]->AgentDue(t))) {
        Prefetch(&vms[i + 2]->state, sizeof(core::State));
        Prefetch(&vms[i + 2]->ledger_handle, sizeof(ledger::VmHandle));
      }
      if (i + 1 < n && vms[i + 1]->AgentDue(t)) vms[i + 1]->ledger_handle.Prefetch();
      StepVm(shard, *vms[i], k, t, now);
    }
    shard.vm_steps += static_cast<int64_t>(shard.vms.size());
    const int64_t next = t + step_ns_;
    while (!shard.heap.empty() && shard.heap.front().t < next) {
      std::pop_heap(shard.heap.begin(), shard.heap.end(), Later());
      const Event e = shard.heap.back();
      shard.heap.pop_back();
      HandleEvent(shard, *vms_[e.vm], e.kind, e.t);
    }
  }
}

void Simulation::MoveVm(Vm& vm, uint32_t to) {
  Shard& from = *shards_[vm.shard];
  Shard& dst = *shards_[to];
  from.vms.erase(std::find(from.vms.begin(), from.vms.end(), &vm));
  dst.vms.insert(std::lower_bound(dst.vms.begin(), dst.vms.end(), &vm, std::less<Vm*>()), &vm);
  // Its pending events go with it, in their order.
  std::vector<Event> moved;
  auto keep = std::partition(from.heap.begin(), from.heap.end(),
                             [&](const Event& e) { return e.vm != vm.index; });
  moved.assign(keep, from.heap.end());
  from.heap.erase(keep, from.heap.end());
  std::make_heap(from.heap.begin(), from.heap.end(), Later());
  std::sort(moved.begin(), moved.end(),
            [](const Event& a, const Event& b) { return Later()(b, a); });
  for (const Event& e : moved) Schedule(dst, vm, e.kind, e.t);
  vm.shard = to;
}

absl::Status Simulation::CheckConservation(int64_t t) const {
  std::vector<core::Resources> held(shards_.size());
  for (const Vm* vm : vms_) held[vm->shard] = held[vm->shard] + vm->state.current();
  // A migrating VM occupies its target too.
  for (const Migration& m : migrations_) {
    held[m.target] = held[m.target] + vms_[m.vm]->state.current();
  }
  for (const auto& s : shards_) {
    if (held[s->index].AnyGreaterThan(config_.node_capacity)) {
      return absl::InternalError(
          absl::StrCat("simulation at ", absl::FormatDuration(absl::Nanoseconds(t)),
                       ": the VMs on node ", s->node, " hold ", held[s->index].ToString(),
                       ", more than its total ", config_.node_capacity.ToString()));
    }
  }
  // And no VM has more than the ledger reserved for it.
  for (const ledger::VmInfo& info : ledger_->ListVms()) {
    auto it = vm_by_name_.find(info.name);
    if (it == vm_by_name_.end()) {
      return absl::InternalError(absl::StrCat("simulation: the ledger has a VM ", info.name,
                                              " that the simulation does not know"));
    }
    const core::Resources& have = vms_[it->second]->state.current();
    if (have.AnyGreaterThan(info.permit)) {
      return absl::InternalError(
          absl::StrCat("simulation at ", absl::FormatDuration(absl::Nanoseconds(t)), ": VM ",
                       info.name, " has ", have.ToString(),
                       ", more than the ledger reserved for it (", info.permit.ToString(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace autoscale::sim
