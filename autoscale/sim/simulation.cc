#include "autoscale/sim/simulation.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/state.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/internal/config.h"
#include "autoscale/sim/internal/monitor_model.h"
#include "autoscale/sim/internal/random.h"
#include "autoscale/sim/internal/share.h"
#include "autoscale/sim/internal/thread_pool.h"
#include "glog/logging.h"

namespace autoscale::sim {
namespace {

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

// The longest delay of an event (about 31 years): an event that far off never happens, and the
// time of any event stays far from int64 overflow (runs last at most about 10 years).
constexpr int64_t kMaxDelayNs = 1'000'000'000'000'000'000;

// Recorded series (a VM's, the nodes') keep at most about this many samples: a long run records
// every k-th step.
constexpr int64_t kMaxSeriesSamples = 50000;

int64_t DelayNs(double ns) {
  return ns >= static_cast<double>(kMaxDelayNs) ? kMaxDelayNs : static_cast<int64_t>(ns);
}

// Starts loading `bytes` at `p` into the cache.
void Prefetch(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
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
  }
  return "?";
}

// --- the simulated parts ---

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

// --- set-up ---

Simulation::Simulation(const SimConfig& config)
    : config_(config),
      start_(kManualClockEpoch),
      step_ns_(absl::ToInt64Nanoseconds(config.step)),
      steps_(config.duration / config.step),
      metrics_every_(config.metrics_interval / config.step),
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
    absl::StatusOr<ledger::Placement> p = ledger_->PlaceVm({.name = spec.name,
                                                            .bounds = config_.bounds,
                                                            .compute_unit = cu,
                                                            .initial = initial,
                                                            .migratable = true});
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
  for (uint32_t i : order) {
    const Placed& pl = placed[i];
    Vm& vm = storage_.emplace_back(i, vms[i].name, std::move(vms[i].workload), config_, pl.initial);
    vm.shard = pl.shard;
    vm.monitor.Start(pl.initial.memory_bytes);
    vm.state.MonitorConnected(start_);
    vm.load1 = vm.load5 = pl.first.milli_cpu / 1000.0;
    vm.demand = pl.first;
    vm.metrics_phase = i % metrics_every_;
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
  while (next_step_ < last) {
    RETURN_IF_ERROR(Serial(next_step_));
    if (next_step_ >= next_migration_check_) next_migration_check_ = next_step_ + check_every;
    // Run the nodes on their own until something needs them all at once.
    int64_t end = std::min({last, next_migration_check_, next_node_sample_});
    for (const Migration& m : migrations_) end = std::min(end, (m.end + step_ns_ - 1) / step_ns_);
    if (progress) end = std::min(end, (next_step_ / progress_every + 1) * progress_every);
    if (config_.check_invariants) end = next_step_ + 1;
    end = std::max(end, next_step_ + 1);
    const int64_t first = next_step_;
    // Threads take runs of neighbouring nodes, a few per thread: fewer claims, and neighbouring
    // nodes (whose ledger entries may share cache lines) mostly on one thread.
    const size_t chunks = std::min(shards_.size(), 8 * pool_->threads());
    pool_->For(chunks, [&](size_t c) {
      for (size_t s = c * shards_.size() / chunks; s < (c + 1) * shards_.size() / chunks; ++s) {
        RunShard(*shards_[s], first, end);
      }
    });
    next_step_ = end;
    if (progress) progress(static_cast<double>(next_step_) / static_cast<double>(steps_));
  }
  if (config_.check_invariants) {
    RETURN_IF_ERROR(ledger_->CheckInvariants());
    RETURN_IF_ERROR(CheckConservation(next_step_ * step_ns_));
  }
  return absl::OkStatus();
}

absl::Status Simulation::Serial(int64_t step) {
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
    if (m.ok) {
      ++vm.result.migrations;
      MoveVm(vm, m.target);
    } else {
      ++vm.result.migration_failures;
    }
    vm.state.SetMigrating(false);
    Emit(vm, t, VmEvent::Kind::kMigrationEnded, vm.state.current(), m.ok);
  }
  migrations_.erase(migrations_.begin(), migrations_.begin() + static_cast<ptrdiff_t>(ended));

  // New migration orders, node by node. Only a node above its watermark can have new ones (the
  // ledger orders migrations off a node when asked for that node's orders); the others' are
  // known already.
  if (step >= next_migration_check_) {
    for (const auto& shard : shards_) {
      ASSIGN_OR_RETURN(const ledger::NodeInfo node, ledger_->GetNode(shard->node));
      if (!(node.reserved - node.migrating).AnyGreaterThan(node.watermark)) continue;
      ASSIGN_OR_RETURN(std::vector<ledger::MigrationOrder> orders,
                       ledger_->MigrationOrders(node.name));
      const uint32_t source = shard->index;
      for (const ledger::MigrationOrder& o : orders) {
        auto vm_it = vm_by_name_.find(o.vm);
        auto target_it = shard_by_node_.find(o.target_node);
        if (vm_it == vm_by_name_.end() || vms_[vm_it->second]->shard != source ||
            target_it == shard_by_node_.end()) {
          return absl::InternalError(absl::StrCat("simulation: migration order ", o.id, " of VM ",
                                                  o.vm, " from node ", node.name, " to node ",
                                                  o.target_node, " does not match the fleet"));
        }
        Vm& vm = *vms_[vm_it->second];
        if (vm.migration_started >= 0) continue;  // ordered before
        vm.migration_started = t;
        vm.state.SetMigrating(true);
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
    SampleNodes(t);
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

void Simulation::StepVm(Shard& shard, Vm& vm, int64_t step, int64_t t, absl::Time now) {
  Account(vm, t);
  vm.demand = vm.workload->At(absl::Nanoseconds(t));
  const Demand& d = vm.demand;
  vm.peak_demand_cu =
      std::max(vm.peak_demand_cu, LargerShare(d.milli_cpu, d.memory_bytes, config_.compute_unit));
  vm.peak_demand.milli_cpu = std::max(vm.peak_demand.milli_cpu, d.milli_cpu);
  vm.peak_demand.memory_bytes = std::max(vm.peak_demand.memory_bytes, d.memory_bytes);

  // Linux's load average: runnable tasks (here: the CPU demand, in cores) averaged exponentially.
  const double cores = static_cast<double>(d.milli_cpu) / 1000;
  vm.load1 = vm.load1 * load1_decay_ + cores * (1 - load1_decay_);
  vm.load5 = vm.load5 * load5_decay_ + cores * (1 - load5_decay_);
  const core::Resources& have = vm.state.current();
  const int64_t used = std::min(d.memory_bytes, have.memory_bytes);

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

  if ((step + vm.metrics_phase) % metrics_every_ == 0) {
    core::SystemMetrics m{.load_avg_1m = vm.load1,
                          .load_avg_5m = vm.load5,
                          .memory_usage_bytes = static_cast<double>(used),
                          .memory_cached_bytes = 0};
    vm.state.UpdateSystemMetrics(now, m);
    if (config_.on_event) {
      VmEvent e{.at = now, .vm = vm.index, .kind = VmEvent::Kind::kMetrics, .metrics = m};
      config_.on_event(e);
    }
    CheckReaction(vm, now);
  }
  if (vm.state.generation() != vm.driven_generation) Drive(shard, vm, t, now);

  if (vm.series != nullptr && step % series_every_ == 0) {
    vm.series->time.push_back(absl::Nanoseconds(t));
    vm.series->demand.push_back(d);
    vm.series->allocated.push_back(vm.state.current());
  }
}

void Simulation::HandleEvent(Shard& shard, Vm& vm, int kind, int64_t t) {
  const absl::Time now = At(t);
  switch (kind) {
    case kWake:
      if (vm.wake_at != t) return;  // replaced by a later call
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
      const core::Resources before = vm.state.current();
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
  const Latencies& lat = config_.latencies;
  // The agent's reading of the advice (core/executor.h): start one action, then ask again.
  core::Advice a;
  for (a = core::StartNext(vm.state, now); a.operation; a = core::StartNext(vm.state, now)) {
    const core::Operation& op = *a.operation;
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
                              .last_permit = op.last_permit});
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
  if (a.wait) {
    const int64_t at = t + std::max<int64_t>(1, DelayNs(absl::ToDoubleNanoseconds(*a.wait)));
    if (at != vm.wake_at) {
      vm.wake_at = at;
      Schedule(shard, vm, kWake, at);
    }
  } else {
    vm.wake_at = -1;
  }
  vm.driven_generation = vm.state.generation();
}

void Simulation::Schedule(Shard& shard, Vm& vm, int kind, int64_t t) {
  shard.heap.push_back({t, shard.seq++, vm.index, static_cast<uint8_t>(kind)});
  std::push_heap(shard.heap.begin(), shard.heap.end(), Later());
}

int64_t Simulation::Latency(Vm& vm, absl::Duration d) {
  const double ns = absl::ToDoubleNanoseconds(d);
  const double j = config_.latencies.jitter;
  return DelayNs(j > 0 ? ns * vm.rng.Uniform(1 - j, 1 + j) : ns);
}

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

void Simulation::Emit(const Vm& vm, int64_t t, VmEvent::Kind kind, const core::Resources& r,
                      bool ok, bool denied) {
  if (!config_.on_event) return;
  VmEvent e{.at = At(t), .vm = vm.index, .kind = kind, .resources = r, .ok = ok, .denied = denied};
  config_.on_event(e);
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
    if (have.AnyGreaterThan(info.reserved)) {
      return absl::InternalError(
          absl::StrCat("simulation at ", absl::FormatDuration(absl::Nanoseconds(t)), ": VM ",
                       info.name, " has ", have.ToString(),
                       ", more than the ledger reserved for it (", info.reserved.ToString(), ")"));
    }
  }
  return absl::OkStatus();
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
