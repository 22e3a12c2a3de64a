// The whole system's reaction to memory pressure: from a guest's usage crossing the monitor's
// threshold to more memory online in that guest (memstep, by the guest's clock), through the
// monitor's cgroup event, its upscale request, the agent, the scheduler's durable permit and the
// QMP hotplug. The baseline in the same run is the hotplug alone: the agent's own timing of the
// same resize (QEMU plugging the memory and the guest taking it), as counter `vm_resize_ms`.
//
// One cluster (a scheduler, one agent, one booted guest) serves every repetition: the VM grows by
// one compute unit per repetition and never shrinks (a long downscale stabilization window).
//
//   bazel run //bench:e2e_bench
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "autoscale/base/proto_duration.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "benchmark/benchmark.h"

namespace autoscale::demo {
namespace {

using ::autoscale::testing::AwaitStatus;
using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterMissing;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;
using ::autoscale::testing::Guest;
using ::autoscale::testing::HasEvent;
using ::autoscale::testing::ReactionMs;
using ::autoscale::testing::VmStatus;

constexpr int kRepetitions = 12;
constexpr int64_t kCuMemory = 256 * kMiB;

struct Fixture {
  std::unique_ptr<Cluster> cluster;
  Guest* guest = nullptr;
  // The guest's MemTotal once it has onlined all of the VM's memory.
  int64_t mem_total = 0;
  std::string error;
};

Fixture* Setup() {
  auto* f = new Fixture;
  if (std::string why = ClusterMissing(); !why.empty()) {
    f->error = "cannot run the cluster here: " + why;
    return f;
  }
  ClusterOptions options;
  options.bin = *FindBinaries();
  // Small steps so that every repetition is one more compute unit of the same VM.
  options.compute_unit = {250, kCuMemory};
  options.nodes = {{.name = "a", .total = {8000, 8192 * kMiB}}};
  // Growth comes from the monitor's threshold only (the goal from metrics would grow the VM while
  // memstep fills memory, before the crossing), and the VM never shrinks during the run.
  options.scaling.set_memory_usage_fraction_target(0.99);
  options.scaling.mutable_downscale_stabilization_window()->set_seconds(3600);
  absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Start(options);
  if (!cluster.ok()) {
    f->error = cluster.status().ToString();
    return f;
  }
  f->cluster = *std::move(cluster);
  absl::StatusOr<Guest*> guest = f->cluster->AddGuest(
      {.name = "vm1", .node = "a", .bounds = {2, kRepetitions + 6}, .start_cu = 2});
  if (!guest.ok()) {
    f->error = guest.status().ToString();
    return f;
  }
  f->guest = *guest;
  absl::StatusOr<api::v1::AgentStatus> ready =
      AwaitStatus(*f->cluster, "a", absl::Seconds(60), [](const api::v1::AgentStatus& s) {
        const api::v1::VmStatus* vm = VmStatus(s, "vm1");
        return vm != nullptr && vm->monitor_connected() && vm->has_load_avg_1m();
      });
  if (!ready.ok()) {
    f->error = ready.status().ToString();
    return f;
  }
  absl::StatusOr<int64_t> mem = f->guest->MemTotalBytes();
  if (!mem.ok()) f->error = mem.status().ToString();
  f->mem_total = mem.value_or(0);
  return f;
}

std::unique_ptr<Fixture> g_fixture;

Fixture& Get() {
  if (!g_fixture) g_fixture.reset(Setup());
  return *g_fixture;
}

// How long the first resize among `s`'s events took, if there is one.
std::optional<absl::Duration> ResizeTime(const api::v1::AgentStatus& s) {
  for (const api::v1::AgentEvent& e : testing::Events(s, "vm1", api::v1::EVENT_KIND_RESIZED)) {
    if (e.has_duration()) return FromProto(e.duration());
  }
  return std::nullopt;
}

// Waits until the guest's MemTotal is at least `bytes`.
absl::Status AwaitMemTotal(Guest& guest, int64_t bytes) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (true) {
    absl::StatusOr<int64_t> mem = guest.MemTotalBytes();
    if (!mem.ok()) return mem.status();
    if (*mem >= bytes) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the guest's MemTotal stayed at ", *mem, " bytes, below ", bytes));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

void BM_ThresholdCrossingToMemoryOnline(benchmark::State& state) {
  Fixture& f = Get();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  for (auto _ : state) {
    // The guest onlines the last step's memory on its own time; memstep sets its target from
    // MemTotal, so it starts once all of it is there (else it aims below the monitor's threshold).
    if (absl::Status online = AwaitMemTotal(*f.guest, f.mem_total); !online.ok()) {
      state.SkipWithError(online.ToString().c_str());
      return;
    }
    absl::StatusOr<api::v1::AgentStatus> before = AwaitStatus(
        *f.cluster, "a", absl::Seconds(5), [](const api::v1::AgentStatus&) { return true; });
    if (!before.ok()) {
      state.SkipWithError(before.status().ToString().c_str());
      return;
    }
    const uint64_t since = testing::LastEvent(*before);
    absl::StatusOr<std::string> line = f.guest->MeasureReaction();
    std::optional<double> ms = line.ok() ? ReactionMs(*line) : std::nullopt;
    if (!ms) {
      state.SkipWithError(line.ok() ? line->c_str() : line.status().ToString().c_str());
      return;
    }
    state.SetIterationTime(*ms / 1000);
    f.mem_total += kCuMemory;
    // The same step as the agent timed it; then wait until the monitor knows the new size, so
    // the next repetition's threshold is the new one.
    absl::StatusOr<api::v1::AgentStatus> after =
        AwaitStatus(*f.cluster, "a", absl::Seconds(20), [&](const api::v1::AgentStatus& s) {
          return HasEvent(s, "vm1", api::v1::EVENT_KIND_MONITOR_NOTIFIED, since);
        });
    if (!after.ok()) {
      state.SkipWithError(after.status().ToString().c_str());
      return;
    }
    absl::StatusOr<api::v1::AgentStatus> events = f.cluster->AgentStatus("a", since);
    std::optional<absl::Duration> resize = events.ok() ? ResizeTime(*events) : std::nullopt;
    state.counters["vm_resize_ms"] = resize ? absl::ToDoubleMilliseconds(*resize) : -1;
    absl::SleepFor(absl::Milliseconds(500));
  }
}
BENCHMARK(BM_ThresholdCrossingToMemoryOnline)
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime()
    ->Iterations(1)
    ->Repetitions(kRepetitions);

}  // namespace

void StopCluster() { g_fixture.reset(); }

}  // namespace autoscale::demo

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  autoscale::demo::StopCluster();  // stops the guest and the daemons, removes their files
  return 0;
}
