// The fleet simulator: the real scaling core and the real ledger driven by simulated VMs, on
// simulated time, to compare scaling policies before a fleet runs them.
//
// Every VM runs its own core::State (the agent's decision state machine, the same code as the
// agent daemon); every node is a node of one in-memory ledger::Ledger (the same code as the
// scheduler daemon). Each VM's monitor follows the in-VM monitor's rules (its threshold, upscale
// requests and downscale checks, with monitor::MonitorOptions), restated in a lean model that a
// test holds to the real monitor::Monitor. What is simulated is only what these talk to:
//   - the workload (workload.h, trace.h) gives each VM's CPU and memory demand at every step;
//     the VM's load averages follow its CPU demand as Linux computes them, its memory use is its
//     demand up to what it has;
//   - the requests the core's advice starts (core/executor.h reads it as the agent does) take
//     latencies (a scheduler round trip, a monitor round trip, CPU and memory hotplug times per
//     vCPU and per GiB, live migration setup plus memory over bandwidth), each failing at a
//     configurable rate;
//   - the scheduler's migration orders are collected and carried out as live migrations.
//
// It is a discrete-event simulation: each node keeps a queue of its VMs' events (replies,
// completed resizes, timers) in time order; at every step each VM's demand is sampled, its
// monitor samples memory, and its agent gets metrics every `metrics_interval`. During steps a
// VM's requests to the ledger touch only its own node's entries; nodes meet only in placement and
// migrations, which happen between steps. So the nodes' steps run on several threads and the
// results do not depend on how the threads were scheduled: a run is a function of its config,
// its workloads and its seed. Between two migration checks (or node samples) a node runs all its
// steps at once, one pass over its VMs (a large fleet does not fit in the cache); the two nodes
// of a migration that ends meanwhile step one step at a time around its end.
//
//   SimConfig config;                    // 20 nodes of 48 vCPU / 192 GiB, 6 h, 5 s steps
//   std::vector<SimVm> vms;
//   for (auto& w : MakeWorkloads(DefaultWorkloadMix(), 500, config.seed)) {
//     vms.push_back({absl::StrCat("vm-", vms.size()), std::move(w)});
//   }
//   ASSIGN_OR_RETURN(std::unique_ptr<Simulation> sim, Simulation::Create(config, std::move(vms)));
//   RETURN_IF_ERROR(sim->Run());
//   Results r = sim->TakeResults();   // per-VM figures, series; Summarize(r) for the totals
//
// Skipping. A VM whose agent would decide nothing new is not asked: when new metrics give the goal
// the agent has (core::ComputeGoal's value and deciding signal), no timer of its core::State is
// due, nothing else changed since it was last asked, and its desired size cannot have changed
// (core::Desired::expires), the metrics wait in the simulation and reach the State when it is
// next asked or told anything. Every input and action happens at the same simulated time either
// way, so the results are identical to stepping every VM (SimConfig::step_every_vm turns skipping
// off; simulation_test compares the two byte for byte). Only the State's generation() counts
// fewer changes.
//
// Speed: Debian's Abseil runs a mutex deadlock detector on every lock unless told not to; call
// absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore) first in a program that
// simulates large fleets (autoscale::InitProgram does).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/resources.h"
#include "autoscale/core/state.h"
#include "autoscale/ledger/migration_policy.h"
#include "autoscale/sim/workload.h"
#include "monitor/options.h"

namespace autoscale::ledger {
class Ledger;
}

namespace autoscale::sim {

class ThreadPool;  // internal/thread_pool.h

// How long the simulated peers take. Each latency is scaled by a factor drawn uniformly from
// [1 - jitter, 1 + jitter]. Defaults: the figures measured on this project's machine
// (bench/RESULTS.md) where there are some, Neon's settings otherwise.
struct Latencies {
  // Agent -> scheduler -> agent.
  absl::Duration scheduler = absl::Milliseconds(5);
  // Agent -> monitor -> agent (and a monitor's upscale request takes half of it).
  absl::Duration monitor = absl::Milliseconds(5);
  // A VM resize: the QMP round trips, plus per vCPU added or removed and per GiB of memory.
  absl::Duration resize = absl::Milliseconds(5);
  absl::Duration per_vcpu = absl::Milliseconds(50);
  absl::Duration per_gib = absl::Milliseconds(130);
  // A live migration: setup, then the VM's memory at this many bytes per second (Neon: 1 GiB/s).
  absl::Duration migration_setup = absl::Seconds(2);
  int64_t migration_bytes_per_second = kGiB;
  double jitter = 0.2;
};

// The probability that one request fails: a scheduler answer is lost (after the ledger applied
// the request), a VM resize fails (the VM keeps its size), a monitor request fails, a live
// migration fails (the VM stays).
struct FailureRates {
  double scheduler = 0;
  double vm_resize = 0;
  double monitor = 0;
  double migration = 0;
};

// One input to or action of a VM's agent, in the order they happen (SimConfig::on_event).
struct VmEvent {
  enum class Kind {
    kMetrics,                // `metrics` reached the agent
    kMonitorUpscaleRequest,  // the monitor's request for more memory reached the agent
    kSchedulerRequest,       // started: `resources` asked, `last_permit` sent
    kSchedulerReply,         // `ok`: permit `resources`; else the answer was lost
    kVmResize,               // started: to `resources`
    kVmResizeDone,           // `ok`: the VM has `resources`; else it failed
    kMonitorUpscale,         // started: told the monitor about `resources`
    kMonitorDownscale,       // started: asked the monitor whether it may shrink to `resources`
    kMonitorReply,           // `ok` (approved or done), or `denied`, or failed
    kMigrationStarted,       // the VM is not resized until it ends
    kMigrationEnded,         // `ok`: it runs on its new node now; else it stays
    kLfcMetrics,             // `lfc` reached the agent (scaling.enableLFCMetrics only)
  };
  absl::Time at{};
  uint32_t vm = 0;
  Kind kind = Kind::kMetrics;
  core::Resources resources{};
  std::optional<core::Resources> last_permit{};
  core::SystemMetrics metrics{};
  core::LfcMetrics lfc{};
  bool ok = true;
  bool denied = false;
};
const char* VmEventKindName(VmEvent::Kind kind);

// Where the VMs start.
enum class InitialPlacement {
  // Each VM, in order, where the ledger places it (the scheduler's placement score, as new VMs
  // arrive). The ledger ranks every node for every VM, so this costs VMs times nodes.
  kLedger,
  // VM i on node i mod nodes if it fits there (a fleet that was running before the simulation
  // starts), else where the ledger places it: linear in the VMs, for region-sized fleets.
  kSpread,
};

struct SimConfig {
  // Simulated time; `duration` and the intervals below are whole multiples of `step`.
  absl::Duration duration = absl::Hours(6);
  absl::Duration step = absl::Seconds(5);
  // How often each agent gets its VM's metrics (the reference: every 5 s); the VMs are spread
  // over the steps of an interval. The monitor samples memory at every step.
  absl::Duration metrics_interval = absl::Seconds(5);
  // Seeds the ledger's placement and the latencies and failures of every VM (workloads are
  // seeded by whoever makes them; MakeWorkloads takes the same seed).
  uint64_t seed = 1;
  // Threads stepping nodes (0: one per core). The results do not depend on it.
  int threads = 1;
  // Asks every VM's agent at every metrics arrival, even when nothing it decides on changed (see
  // "Skipping" above): slower, the same results; the baseline of the tests and benchmarks.
  bool step_every_vm = false;

  // The fleet.
  int nodes = 20;
  core::Resources node_capacity{48000, 192 * kGiB};
  double watermark = 0.9;
  // Null: the ledger's default (oldest first, the reference).
  std::shared_ptr<const ledger::MigrationPolicy> migration_policy;
  // How often the nodes' agents ask for migration orders.
  absl::Duration migration_check_interval = absl::Seconds(30);
  InitialPlacement placement = InitialPlacement::kLedger;

  // Every VM.
  core::Resources compute_unit{250, kGiB};
  core::Bounds bounds{1, 16};
  core::ScalingConfig scaling;
  core::Timings timings;
  // The monitors' rules (samples_averaged at most 8).
  monitor::MonitorOptions monitor;
  // With scaling.enable_lfc_metrics: how often each agent gets its VM's LFC working-set windows
  // (the reference scrapes them every 15 s), and the share of the pages a VM touches in a minute
  // that it never touched before (internal/working_set_model.h: the rest are revisits of one hot
  // set). The guest's page cache holds the part of the working set that fits in the memory the
  // VM does not use (SystemMetrics::memory_cached_bytes).
  absl::Duration lfc_metrics_interval = absl::Seconds(15);
  double lfc_new_page_share = 0.02;

  Latencies latencies;
  FailureRates failures;

  // Recording: these VMs' demand and size at every step (Results::vm_series), and every node's
  // reservation every `node_series_interval` (0: about 720 samples over the run).
  std::vector<uint32_t> series_vms;
  absl::Duration node_series_interval = absl::ZeroDuration();
  // Checks the ledger's invariants and that no node's VMs hold more than its total, at every
  // step (slow; for tests). A violation stops the run with an error.
  bool check_invariants = false;
  // Called with every input and action of every VM, from the thread that steps the VM's node
  // (so with threads > 1 it must be thread-safe). Empty: nothing is recorded.
  std::function<void(const VmEvent&)> on_event;
};

// Checks ranges and that durations are whole steps; the error names the field.
absl::Status ValidateSimConfig(const SimConfig& config);

// A VM to simulate.
struct SimVm {
  std::string name;
  std::unique_ptr<Workload> workload;
};

// What happened to one VM. Durations are simulated time; CU-hours count a VM of c compute units
// of CPU and m of memory as max(c, m) CU.
struct VmResult {
  std::string name;
  std::string workload;
  std::string node;  // where it ended
  core::Resources initial;
  core::Resources final_size;
  core::Resources peak_size;
  Demand peak_demand;
  // What the VM had, and what its demand alone would need (fractional CUs).
  double cu_hours_allocated = 0;
  double cu_hours_demand = 0;
  // The smallest whole-CU size, within the VM's bounds, that covers its peak demand.
  uint32_t static_peak_cu = 0;
  // Time during which demand exceeded what the VM had (either resource; CPU; memory).
  absl::Duration under_provisioned;
  absl::Duration cpu_short;
  absl::Duration memory_short;
  // Times its memory demand rose above its memory (the guest would swap or OOM).
  int64_t memory_shortfalls = 0;
  // Upscale requests its monitor sent (memory passed the monitor's threshold).
  int64_t memory_pressure_events = 0;
  // Metrics the agent got, and how many of them gave a goal decided by each part of it (the
  // goal of core::ComputeGoal, before the state machine's adjustments).
  int64_t metrics = 0;
  int64_t goal_by_cpu = 0;
  int64_t goal_by_memory = 0;
  int64_t goal_by_memory_total = 0;  // memory used plus the cached part of the LFC working set
  int64_t goal_by_lfc = 0;
  int64_t scheduler_requests = 0;
  int64_t growth_requests = 0;  // requests that asked for more than the last permit
  int64_t full_grants = 0;
  int64_t partial_grants = 0;
  int64_t denials = 0;
  int64_t scheduler_failures = 0;  // answers lost
  int64_t invalid_permits = 0;     // permits the core refused, or ledger errors (a bug)
  int64_t upscales = 0;            // completed resizes that grew the VM
  int64_t downscales = 0;
  int64_t resize_failures = 0;
  int64_t downscale_denials = 0;  // by the monitor
  int64_t monitor_failures = 0;
  int64_t migrations = 0;
  int64_t migration_failures = 0;
  absl::Duration migrating;
  // From the moment the core wanted more than the VM had to the moment the VM had it.
  std::vector<absl::Duration> reaction_times;
  // Wishes to grow that went away before they were met.
  int64_t reactions_abandoned = 0;
};

// One recorded VM at every step (every k-th step of a run longer than 50,000 steps).
struct VmSeries {
  uint32_t vm = 0;
  std::vector<absl::Duration> time{};
  std::vector<Demand> demand{};
  std::vector<core::Resources> allocated{};
  // The goal of the agent's latest metrics (core::ComputeGoal) and its parts, in compute units;
  // NaN where a part is absent (no metrics yet; LFC off or too few windows).
  std::vector<double> goal_cu{}, cpu_cu{}, memory_cu{}, lfc_cu{};
};

// A sum of demands (in double: the sum of many large demands does not overflow).
struct DemandTotal {
  double milli_cpu = 0;
  double memory_bytes = 0;

  friend bool operator==(const DemandTotal&, const DemandTotal&) = default;
};

// Every node at one moment: what the ledger reserved for its VMs, what they had, what they
// asked for, what they used of it (demand up to what each VM had) and what they lacked (demand
// beyond it), by node index as Results::node_names.
struct NodeSample {
  absl::Duration time;
  std::vector<core::Resources> reserved;
  std::vector<core::Resources> allocated;
  std::vector<DemandTotal> demand;
  std::vector<DemandTotal> used{};
  std::vector<DemandTotal> shortage{};
};

struct Results {
  absl::Duration duration;
  absl::Duration step;
  core::Resources compute_unit;
  core::Bounds bounds;
  int64_t vm_steps = 0;
  // Times an agent asked its state what to do (core::StartAll): what skipping saves, so the
  // only figure that depends on SimConfig::step_every_vm.
  int64_t agent_asks = 0;
  std::vector<VmResult> vms;
  std::vector<std::string> node_names;
  std::vector<core::Resources> node_totals;
  double watermark = 0;
  monitor::MonitorOptions monitor;
  core::ScalingConfig scaling;
  std::vector<NodeSample> node_series;
  std::vector<VmSeries> vm_series;
};

class Simulation {
 public:
  // Places every VM (in order) at the size the core wants for its first demand sample. Errors:
  // an invalid config, or a fleet too small to place the VMs (the error names the VM).
  static absl::StatusOr<std::unique_ptr<Simulation>> Create(const SimConfig& config,
                                                            std::vector<SimVm> vms);
  ~Simulation();

  Simulation(const Simulation&) = delete;
  Simulation& operator=(const Simulation&) = delete;

  // Runs to `config.duration`, calling `progress` (may be empty) with the fraction done now and
  // then, on the calling thread. An error (a broken invariant with check_invariants, or a ledger
  // error in a migration) stops the run.
  absl::Status Run(const std::function<void(double)>& progress = {});
  // Runs until `t` (rounded up to a step, at most the duration); Run continues from there.
  absl::Status RunUntil(absl::Duration t);
  // Simulated time reached.
  absl::Duration now() const;

  // The ledger, for reads (and checks) between runs.
  const ledger::Ledger& ledger() const;
  // A VM's agent state and size (index as in Create).
  const core::State& vm_state(uint32_t vm) const;
  size_t vm_count() const;

  // The results up to now(). Call once, at the end.
  Results TakeResults();

 private:
  // Defined in internal/fleet.h.
  struct Vm;
  struct Shard;
  struct Migration;

  explicit Simulation(const SimConfig& config);
  absl::Status Place(std::vector<SimVm> vms);
  absl::Status StepTo(int64_t last_step, const std::function<void(double)>& progress);

  // Between steps: migrations, node samples, invariants.
  absl::Status Serial(int64_t step);
  // The migrations that end by `step` (between steps, before it): the ledger, the VMs' nodes.
  absl::Status EndMigrations(int64_t step);
  // The step before which a migration ends.
  int64_t EndStep(const Migration& m) const;
  // The steps [first, end) of one node.
  void RunShard(Shard& shard, int64_t first, int64_t end);
  void StepVm(Shard& shard, Vm& vm, int64_t step, int64_t t, absl::Time now);
  // New metrics (and/or LFC metrics) reach the agent: it is asked, or they wait (skipping).
  void Receive(Shard& shard, Vm& vm, bool metrics, bool lfc, int64_t t, absl::Time now);
  // Metrics that waited reach the VM's state.
  void Deliver(Vm& vm);
  // The goal of the VM's latest metrics, as its state has it or will once they are delivered.
  core::Goal LatestGoal(const Vm& vm) const;
  void CountGoal(Vm& vm, core::Signal decided_by);
  void EmitMetrics(const Vm& vm, absl::Time now);
  void EmitLfc(const Vm& vm, absl::Time now);
  // Copies what every step reads of the VM's state (its size).
  void Sync(Vm& vm);
  void HandleEvent(Shard& shard, Vm& vm, int kind, int64_t t);
  // Starts what the core advises (core::StartAll) until it says wait.
  void Drive(Shard& shard, Vm& vm, int64_t t, absl::Time now);
  // Carries out one operation the core advised: the request, its latency and its outcome.
  void Carry(Shard& shard, Vm& vm, const core::Operation& op, int64_t t, absl::Time now);
  void Schedule(Shard& shard, Vm& vm, int kind, int64_t t);
  void Account(Vm& vm, int64_t t);
  void CheckReaction(Vm& vm, absl::Time now);
  void Emit(const Vm& vm, int64_t t, VmEvent::Kind kind, const core::Resources& r, bool ok = true,
            bool denied = false);
  int64_t Latency(Vm& vm, absl::Duration d);
  void MoveVm(Vm& vm, uint32_t to);
  absl::Status CheckConservation(int64_t t) const;
  // A node sample at `t`: Serial makes it, and each node fills in its part at the start of the
  // run of steps that follows (in parallel: a region has thousands of nodes).
  void StartNodeSample(int64_t t);
  absl::Status SampleNode(const Shard& shard, NodeSample& sample) const;
  // Whole steps in `d` (rounded up; at least 1, at most the run).
  int64_t StepsIn(absl::Duration d) const;
  // start_ + t ns, without absl's out-of-line Duration addition (called at every node's steps and
  // events): the same normalized Time.
  absl::Time At(int64_t t) const { return absl::FromUnixNanos(start_unix_ns_ + t); }

  const SimConfig config_;
  const absl::Time start_;
  const int64_t start_unix_ns_;
  const int64_t step_ns_;
  const int64_t steps_;
  const int64_t metrics_every_;
  const int64_t lfc_every_;
  const double load1_decay_, load5_decay_;
  // The ledger's clock (VM ages, placement): moved between steps.
  ManualClock ledger_clock_;
  std::unique_ptr<ledger::Ledger> ledger_;
  // The VMs, grouped by the node they were placed on; vms_ by index.
  std::vector<Vm> storage_;
  std::vector<Vm*> vms_;
  std::vector<std::unique_ptr<Shard>> shards_;
  absl::flat_hash_map<std::string, uint32_t> vm_by_name_;
  absl::flat_hash_map<std::string, uint32_t> shard_by_node_;
  std::vector<Migration> migrations_;  // in flight
  std::vector<NodeSample> node_series_;
  std::vector<VmSeries> vm_series_;
  std::unique_ptr<ThreadPool> pool_;
  int64_t next_step_ = 0;
  int64_t next_migration_check_ = 0;
  int64_t next_node_sample_ = 0;
  bool sample_pending_ = false;  // node_series_.back() waits for the nodes' parts
  int64_t node_sample_every_ = 1;
  int64_t series_every_ = 1;
};

}  // namespace autoscale::sim
