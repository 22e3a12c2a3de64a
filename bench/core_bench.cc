// The scaling core: goal computations and NextActions calls per second. The targets:
// >= 5 million goal computations and >= 1 million NextActions per second per core.
#include <vector>

#include "autoscale/base/units.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/state.h"
#include "benchmark/benchmark.h"

namespace autoscale::core {
namespace {

const Resources kCu{250, kGiB};

std::vector<SystemMetrics> MetricsSamples() {
  std::vector<SystemMetrics> v;
  for (int i = 0; i < 64; ++i) {
    v.push_back({.load_avg_1m = 0.1 * (i % 37),
                 .load_avg_5m = 0.1 * (i % 23),
                 .memory_usage_bytes = 0.25 * kGiB * (i % 29),
                 .memory_cached_bytes = 0.5 * kGiB * (i % 7)});
  }
  return v;
}

LfcMetrics Windows() {
  LfcMetrics lfc;
  double v = 0;
  for (int i = 0; i < 60; ++i) lfc.working_set_pages.push_back(v += (i < 20 ? 10000 : 300));
  return lfc;
}

void BM_ComputeGoal(benchmark::State& state) {
  ScalingConfig config;
  const auto samples = MetricsSamples();
  size_t i = 0;
  for (auto _ : state) {
    Goal g = ComputeGoal(config, kCu, &samples[i++ & 63], nullptr);
    benchmark::DoNotOptimize(g);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ComputeGoal);

void BM_ComputeGoalWithLfc(benchmark::State& state) {
  ScalingConfig config;
  config.enable_lfc_metrics = true;
  const auto samples = MetricsSamples();
  const LfcMetrics lfc = Windows();
  size_t i = 0;
  for (auto _ : state) {
    Goal g = ComputeGoal(config, kCu, &samples[i++ & 63], &lfc);
    benchmark::DoNotOptimize(g);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ComputeGoalWithLfc);

State StartedState(ScalingConfig scaling = {}) {
  absl::Time now = absl::UnixEpoch();
  State s(StateConfig{kCu, scaling, Timings{}}, kCu * 2, Bounds{1, 16});
  s.SchedulerRequestStarted(now, kCu * 2);
  (void)s.SchedulerRequestSucceeded(now, kCu * 2);
  s.MonitorConnected(now);
  return s;
}

// A steady VM: nothing to do but wait for the next periodic request.
void BM_NextActionsIdle(benchmark::State& state) {
  State s = StartedState();
  s.UpdateSystemMetrics(absl::UnixEpoch(), SystemMetrics{.load_avg_1m = 0.45, .load_avg_5m = 0.45});
  absl::Time now = absl::UnixEpoch();
  for (auto _ : state) {
    ActionSet a = s.NextActions(now);
    benchmark::DoNotOptimize(a);
    now += absl::Microseconds(1);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NextActionsIdle);

// Growth pending: a scheduler request and a monitor step are computed every call.
void BM_NextActionsBusy(benchmark::State& state) {
  ScalingConfig scaling;
  scaling.enable_lfc_metrics = true;
  scaling.downscale_stabilization_window = absl::Minutes(5);
  State s = StartedState(scaling);
  absl::Time now = absl::UnixEpoch();
  s.UpdateLfcMetrics(now, Windows());
  s.UpdateSystemMetrics(now, SystemMetrics{.load_avg_1m = 2.0, .memory_usage_bytes = 3.0 * kGiB});
  for (auto _ : state) {
    ActionSet a = s.NextActions(now);
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NextActionsBusy);

// The agent's per-sample work: new metrics (goal recomputed), then NextActions.
void BM_MetricsUpdateAndNextActions(benchmark::State& state) {
  State s = StartedState();
  const auto samples = MetricsSamples();
  absl::Time now = absl::UnixEpoch();
  size_t i = 0;
  for (auto _ : state) {
    s.UpdateSystemMetrics(now, samples[i++ & 63]);
    ActionSet a = s.NextActions(now);
    benchmark::DoNotOptimize(a);
    now += absl::Milliseconds(5);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MetricsUpdateAndNextActions);

}  // namespace
}  // namespace autoscale::core
