// The CPU quota a VM's host cgroup enforces, measured: a guest spins on every vCPU and QEMU's
// CPU use is read from the cgroup's own accounting (cpuacct.usage on v1, cpu.stat on v2) over
// 10 s, at 250m, 500m (1 vCPU), 1250m and 2000m (2 vCPUs). The baseline in the same run is the
// same guest with the quota cleared. Counters: used_cores (CPU seconds per second), permit_cores,
// and used_of_permit (used / permit; the target is 0.9..1.1).
//
//   flock /tmp/autoscale-qemu.lock bazel run --config=opt //bench:cpu_quota_bench
//
// Needs QEMU, the test guest (neonvm/guest/build) and writable host cgroups (root); without
// them it skips with the reason. On a busy host the unlimited baseline shows what the host could
// give, which caps what any quota can reach.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/testing/vm.h"
#include "benchmark/benchmark.h"
#include "neonvm/launcher/host_cgroup.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::neonvm {
namespace {

using launcher::HostCgroup;

constexpr absl::Duration kSettle = absl::Seconds(3);
constexpr absl::Duration kMeasure = absl::Seconds(10);

// One spinning guest at a time (a second would compete for the host's CPUs): booted with
// `cpus` vCPUs, replacing the one before.
std::unique_ptr<testing::BootedVm> booted;

testing::BootedVm* SpinningGuest(benchmark::State& state, int cpus) {
  if (booted != nullptr && booted->vm->spec().cpus_use == cpus) return booted.get();
  booted.reset();
  if (std::string why = testing::GuestMissing(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return nullptr;
  }
  auto spec = testing::GuestSpec(absl::StrCat("cpu-quota-", cpus));
  if (!spec.ok()) {
    state.SkipWithError(std::string(spec.status().message()).c_str());
    return nullptr;
  }
  spec->cpus_max = std::max(spec->cpus_max, cpus);
  spec->cpus_use = cpus;
  spec->cgroup.mode = launcher::HostCgroupSpec::Mode::kRequired;
  auto b = testing::Boot(*spec);
  if (!b.ok()) {
    state.SkipWithError(std::string(b.status().message()).c_str());
    return nullptr;
  }
  // One busy loop per vCPU; the guest's scheduler spreads them.
  std::string spin;
  for (int i = 0; i < cpus; ++i) absl::StrAppend(&spin, "(while :; do :; done) >/dev/null 2>&1 & ");
  auto out = b->console->Run(spin + "echo spinning");
  if (!out.ok() || *out != "spinning") {
    state.SkipWithError(
        absl::StrCat("starting the spinners: ", out.ok() ? *out : out.status().ToString()).c_str());
    return nullptr;
  }
  booted = std::make_unique<testing::BootedVm>(std::move(*b));
  return booted.get();
}

// range(0): vCPUs; range(1): the quota in milli-CPU, 0 for none (the baseline).
void BM_SpinningGuestCpuUse(benchmark::State& state) {
  const int cpus = static_cast<int>(state.range(0));
  const int milli = static_cast<int>(state.range(1));
  testing::BootedVm* b = SpinningGuest(state, cpus);
  if (b == nullptr) return;
  HostCgroup* cg = b->vm->cgroup();
  absl::Status s = milli > 0 ? b->vm->SetCpuLimit(milli) : cg->ClearCpuLimit();
  if (!s.ok()) return state.SkipWithError(std::string(s.message()).c_str());
  absl::SleepFor(kSettle);
  for (auto _ : state) {
    absl::StatusOr<int64_t> start = cg->CpuUsageNs();
    absl::Time t0 = absl::Now();
    absl::SleepFor(kMeasure);
    absl::StatusOr<int64_t> end = cg->CpuUsageNs();
    absl::Duration wall = absl::Now() - t0;
    if (!start.ok() || !end.ok()) return state.SkipWithError("reading the cgroup's CPU usage");
    double used = static_cast<double>(*end - *start) / absl::ToInt64Nanoseconds(wall);
    state.SetIterationTime(absl::ToDoubleSeconds(wall));
    state.counters["used_cores"] = used;
    state.counters["permit_cores"] = milli / 1000.0;
    if (milli > 0) state.counters["used_of_permit"] = used / (milli / 1000.0);
  }
}
BENCHMARK(BM_SpinningGuestCpuUse)
    ->ArgNames({"vcpus", "milli"})
    ->Args({1, 250})
    ->Args({1, 500})
    ->Args({1, 0})
    ->Args({2, 1250})
    ->Args({2, 2000})
    ->Args({2, 0})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace autoscale::neonvm

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  autoscale::neonvm::booted.reset();  // stops QEMU and removes its cgroup
  benchmark::Shutdown();
  return 0;
}
