// The fleet simulator's speed in simulated VM-steps per second. The target: 10,000 VMs
// over 24 simulated hours at 5-second steps (172.8 M VM-steps) in under 60 s on this 2-core
// machine, about 2.9 M VM-steps/s.
//
// BM_Simulate runs one simulated hour of the target fleet (10,000 VMs on 400 nodes of
// 48 vCPU / 192 GiB, the default workload mix, 5 s steps: 7.2 M VM-steps) on 1 and 2 threads; the
// fleet's set-up (placement) is not timed. Its counter `s_per_24h` is the time a full day would
// take at that rate.
//
// BM_Region: the region's shape (issue 20), skipping against stepping every VM; see below.
//
// Baseline, BM_CoreOnly: the least any simulator running the real core must do per VM-step,
// with no engine at all: for 10,000 core::State objects in turn, new metrics and one NextActions.
// The ratio of the two is what the engine (workloads, monitors, events, the ledger, accounting)
// costs on top of the core.
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/units.h"
#include "autoscale/core/state.h"
#include "autoscale/sim/simulation.h"
#include "autoscale/sim/workload.h"
#include "benchmark/benchmark.h"
#include "glog/logging.h"

namespace autoscale::sim {
namespace {

constexpr int kVms = 10000;
constexpr int kNodes = 400;

void Quiet() {
  // As in the example binaries: no deadlock detector on every lock (Debian's Abseil is built
  // without NDEBUG), no log line per migration.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FLAGS_minloglevel = google::GLOG_ERROR;
}

// Runs `config` on kVms VMs of the default mix once per iteration; only Run() is timed.
// Returns the VM-steps simulated.
int64_t RunSimulations(benchmark::State& state, const SimConfig& config) {
  int64_t steps = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<SimVm> vms;
    for (auto& w : MakeWorkloads(DefaultWorkloadMix(), kVms, config.seed)) {
      vms.push_back({absl::StrCat("vm-", vms.size()), std::move(w)});
    }
    absl::StatusOr<std::unique_ptr<Simulation>> sim = Simulation::Create(config, std::move(vms));
    CHECK(sim.ok()) << sim.status();
    state.ResumeTiming();
    CHECK((*sim)->Run().ok());
    state.PauseTiming();
    steps += (*sim)->TakeResults().vm_steps;
    sim->reset();
    state.ResumeTiming();
  }
  return steps;
}

void BM_Simulate(benchmark::State& state) {
  Quiet();
  SimConfig config;
  config.duration = absl::Hours(1);
  config.step = absl::Seconds(5);
  config.nodes = kNodes;
  config.node_capacity = {48000, 192 * kGiB};
  config.threads = static_cast<int>(state.range(0));
  config.failures = {.scheduler = 0.001, .vm_resize = 0.001, .monitor = 0.001, .migration = 0.01};
  const int64_t steps = RunSimulations(state, config);
  state.SetItemsProcessed(steps);
  // (Days simulated) / (time taken), inverted: the time one day of the target takes.
  state.counters["s_per_24h"] =
      benchmark::Counter(static_cast<double>(steps) / 172.8e6,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Simulate)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Iterations(2)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

// Region-shaped (issue 20): the same 10,000 VMs spread thinly over 4,000 nodes (region.sh's
// shape, a tenth of its VMs), one simulated hour, with skipping (step_every_vm=0) and its
// baseline in the same run, the simulator asking every agent at every metrics arrival
// (step_every_vm=1; the same results). The node series is sampled every 2 minutes, as in a day.
void BM_Region(benchmark::State& state) {
  Quiet();
  SimConfig config;
  config.duration = absl::Hours(1);
  config.step = absl::Seconds(5);
  config.nodes = 4000;
  config.node_capacity = {48000, 192 * kGiB};
  config.placement = InitialPlacement::kSpread;
  config.node_series_interval = absl::Minutes(2);
  config.step_every_vm = state.range(0) != 0;
  config.threads = static_cast<int>(state.range(1));
  config.failures = {.scheduler = 0.001, .vm_resize = 0.001, .monitor = 0.001, .migration = 0.01};
  const int64_t steps = RunSimulations(state, config);
  state.SetItemsProcessed(steps);
  // The CPU seconds one VM-step costs (all threads; "452n" is 452 ns): the load-independent
  // figure on a shared machine.
  state.counters["cpu_per_vm_step"] = benchmark::Counter(
      static_cast<double>(steps), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Region)
    ->ArgNames({"step_every_vm", "threads"})
    ->Args({1, 1})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Iterations(1)
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kSecond);

void BM_CoreOnly(benchmark::State& state) {
  Quiet();
  const core::Resources cu{250, kGiB};
  std::vector<core::State> states;
  states.reserve(kVms);
  absl::Time now = kManualClockEpoch;
  for (int i = 0; i < kVms; ++i) {
    core::State& s =
        states.emplace_back(core::StateConfig{cu, {}, {}}, cu * 4, core::Bounds{1, 16});
    s.SchedulerRequestStarted(now, cu * 4);
    (void)s.SchedulerRequestSucceeded(now, cu * 4);
    s.MonitorConnected(now);
  }
  int64_t steps = 0;
  uint64_t k = 0;
  for (auto _ : state) {
    now += absl::Seconds(5);
    for (core::State& s : states) {
      // Loads around 4 CU, so that the goal moves now and then.
      const double load = 0.8 + 0.1 * static_cast<double>((++k * 2654435761u >> 7) % 4);
      s.UpdateSystemMetrics(
          now, core::SystemMetrics{
                   .load_avg_1m = load, .load_avg_5m = load, .memory_usage_bytes = 2.5 * kGiB});
      core::ActionSet a = s.NextActions(now);
      benchmark::DoNotOptimize(a);
    }
    steps += kVms;
  }
  state.SetItemsProcessed(steps);
}
BENCHMARK(BM_CoreOnly)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace autoscale::sim
