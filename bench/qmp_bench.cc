// The neonvm layer against real QEMU: the QMP round trip through QmpClient against a raw socket
// to the same QEMU (the baseline), CPU hot-add and virtio-mem grow latency in a booted guest, and
// live migration of idle 256 MiB and 1 GiB guests (total time and downtime as QEMU reports them).
//
//   bazel run --config=opt //bench:qmp_bench
//
// The guest benchmarks need the test guest (neonvm/guest/build); without it they are skipped.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "benchmark/benchmark.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/migration/migration.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm {
namespace {

using launcher::Vm;

// The baseline: one line out, one line back, on a plain blocking socket.
class RawQmp {
 public:
  explicit RawQmp(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval timeout{5, 0};  // a stuck QEMU fails the benchmark instead of hanging it
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    ok_ = ok_ && !ReadLine().empty() && RoundTrip("{\"execute\":\"qmp_capabilities\"}\n");
  }
  ~RawQmp() { close(fd_); }
  bool ok() const { return ok_; }

  bool RoundTrip(const std::string& line) {
    if (send(fd_, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
      return false;
    }
    return !ReadLine().empty();
  }

 private:
  std::string ReadLine() {
    while (true) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      char b[4096];
      ssize_t n = recv(fd_, b, sizeof(b), 0);
      if (n <= 0) return "";
      buf_.append(b, n);
    }
  }

  int fd_;
  bool ok_ = false;
  std::string buf_;
};

// A paused VM without a guest, with a second QMP socket for the raw baseline, which stays
// connected for the whole run (QEMU serves one client per QMP socket).
struct PausedVm {
  testing::TempDir dir;
  std::unique_ptr<Vm> vm;
  std::unique_ptr<RawQmp> raw;
};

PausedVm* Paused() {
  // Destroyed at exit, which stops QEMU and removes the directories.
  static std::unique_ptr<PausedVm> p = [] {
    auto p = std::make_unique<PausedVm>();
    std::string raw_socket = p->dir.path() + "/raw.sock";
    launcher::VmSpec spec = testing::NoGuestSpec("bench-qmp");
    spec.extra_args = {"-qmp", absl::StrCat("unix:", raw_socket, ",server=on,wait=off")};
    auto vm = Vm::Start(spec);
    if (vm.ok()) {
      p->vm = std::move(*vm);
      p->raw = std::make_unique<RawQmp>(raw_socket);
    }
    return p;
  }();
  return p.get();
}

bool NeedQemu(benchmark::State& state) {
  if (std::string why = testing::QemuMissing(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return false;
  }
  if (Paused()->vm == nullptr || !Paused()->raw->ok()) {
    state.SkipWithError("QEMU did not start, or its second QMP socket did not answer");
    return false;
  }
  return true;
}

void BM_QmpRoundTrip_RawSocket(benchmark::State& state) {
  if (!NeedQemu(state)) return;
  RawQmp& raw = *Paused()->raw;
  for (auto _ : state) {
    if (!raw.RoundTrip("{\"execute\":\"query-status\",\"id\":1}\n")) {
      return state.SkipWithError("raw round trip failed");
    }
  }
}
BENCHMARK(BM_QmpRoundTrip_RawSocket)->Unit(benchmark::kMicrosecond)->MinTime(2)->UseRealTime();

void BM_QmpRoundTrip_QmpClient(benchmark::State& state) {
  if (!NeedQemu(state)) return;
  qmp::QmpClient& client = Paused()->vm->qmp();
  for (auto _ : state) {
    if (!client.Execute("query-status").ok()) return state.SkipWithError("Execute failed");
  }
}
BENCHMARK(BM_QmpRoundTrip_QmpClient)->Unit(benchmark::kMicrosecond)->MinTime(2)->UseRealTime();

// Both, alternating in one loop (and which goes first, too) so drift and order hit them alike.
// Reports the median round trip of each and their ratio: medians, because on a shared machine a
// few round trips wait for a CPU for milliseconds and would dominate a mean.
void BM_QmpRoundTrip_Ratio(benchmark::State& state) {
  if (!NeedQemu(state)) return;
  RawQmp& raw = *Paused()->raw;
  qmp::QmpClient& client = Paused()->vm->qmp();
  std::vector<double> raw_us, client_us;
  bool raw_first = true;
  for (auto _ : state) {
    for (int i = 0; i < 2; ++i) {
      absl::Time t0 = absl::Now();
      if ((i == 0) == raw_first) {
        raw.RoundTrip("{\"execute\":\"query-status\",\"id\":1}\n");
        raw_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
      } else {
        client.Execute("query-status").IgnoreError();
        client_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
      }
    }
    raw_first = !raw_first;
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  double raw_median = median(raw_us), client_median = median(client_us);
  state.counters["raw_median_us"] = raw_median;
  state.counters["client_median_us"] = client_median;
  state.counters["client_over_raw"] = client_median / raw_median;
}
BENCHMARK(BM_QmpRoundTrip_Ratio)->Unit(benchmark::kMicrosecond)->MinTime(3)->UseRealTime();

// One booted guest at a time (with a migration target, two), kept while the benchmarks that
// use its shape run: `slots` slots of `slot_bytes`, up to `max_slots`.
testing::BootedVm* Booted(benchmark::State& state, int64_t slot_bytes, int slots, int max_slots) {
  static std::tuple<int64_t, int, int> shape;
  static std::unique_ptr<testing::BootedVm> booted;
  if (std::string why = testing::GuestMissing(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return nullptr;
  }
  if (booted != nullptr && shape == std::make_tuple(slot_bytes, slots, max_slots)) {
    return booted.get();
  }
  booted.reset();
  shape = {slot_bytes, slots, max_slots};
  auto spec = testing::GuestSpec(absl::StrCat("bench-", slot_bytes * slots / kMiB));
  if (!spec.ok()) {
    state.SkipWithError(std::string(spec.status().message()).c_str());
    return nullptr;
  }
  spec->memory_slot_bytes = slot_bytes;
  spec->memory_slots_min = slots;
  spec->memory_slots_use = slots;
  spec->memory_slots_max = max_slots;
  auto b = testing::Boot(*spec);
  if (!b.ok()) {
    state.SkipWithError(std::string(b.status().message()).c_str());
    return nullptr;
  }
  booted = std::make_unique<testing::BootedVm>(std::move(*b));
  return booted.get();
}

void BM_CpuHotAdd(benchmark::State& state) {
  testing::BootedVm* b = Booted(state, 256 * kMiB, 1, 4);
  if (b == nullptr) return;
  hotplug::VmResizer resizer(b->vm->qmp(), b->vm->spec());
  for (auto _ : state) {
    // Until the guest acknowledges the new vCPU (ACPI _OST).
    auto added = resizer.Resize({2, 256 * kMiB});
    state.PauseTiming();
    if (!added.ok()) return state.SkipWithError(std::string(added.status().message()).c_str());
    auto removed = resizer.Resize({1, 256 * kMiB});
    if (!removed.ok()) return state.SkipWithError(std::string(removed.status().message()).c_str());
    state.ResumeTiming();
  }
}
// Each add creates a vCPU; under TCG a QEMU process can create 255 (see launcher/vm.h).
BENCHMARK(BM_CpuHotAdd)->Unit(benchmark::kMillisecond)->Iterations(20)->UseRealTime();

void BM_VirtioMemGrow512MiB(benchmark::State& state) {
  testing::BootedVm* b = Booted(state, 256 * kMiB, 1, 4);
  if (b == nullptr) return;
  hotplug::VmResizer resizer(b->vm->qmp(), b->vm->spec());
  for (auto _ : state) {
    // Until virtio-mem reports all of it plugged by the guest's driver.
    auto grown = resizer.Resize({1, 768 * kMiB});
    state.PauseTiming();
    if (!grown.ok()) return state.SkipWithError(std::string(grown.status().message()).c_str());
    auto shrunk = resizer.Resize({1, 256 * kMiB});
    if (!shrunk.ok()) return state.SkipWithError(std::string(shrunk.status().message()).c_str());
    state.ResumeTiming();
  }
}
BENCHMARK(BM_VirtioMemGrow512MiB)->Unit(benchmark::kMillisecond)->Iterations(10)->UseRealTime();

// One migration per iteration, the VM going back and forth between fresh QEMU processes. The
// time is QEMU's total-time; downtime is a counter (the aggregates give its median).
void BM_MigrateIdleGuest(benchmark::State& state) {
  const int64_t mib = state.range(0);
  testing::BootedVm* b = Booted(state, mib * kMiB, 1, 1);
  if (b == nullptr) return;
  migration::MigrationOptions options;
  for (auto _ : state) {
    auto m = migration::LiveMigrate(*b->vm, options);
    if (!m.ok()) return state.SkipWithError(std::string(m.status().message()).c_str());
    b->vm = std::move(m->vm);
    state.SetIterationTime(absl::ToDoubleSeconds(m->stats.total_time));
    state.counters["downtime_ms"] = absl::ToDoubleMilliseconds(m->stats.downtime);
    state.counters["sent_MiB"] = static_cast<double>(m->stats.transferred_bytes) / kMiB;
  }
}
BENCHMARK(BM_MigrateIdleGuest)
    ->Arg(256)
    ->Arg(1024)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->Repetitions(7)
    ->UseManualTime()
    ->ReportAggregatesOnly(true);

}  // namespace
}  // namespace autoscale::neonvm

BENCHMARK_MAIN();
