// Fuzzes ParseTraceCsv: any text either fails with an error naming the source, or gives a trace
// whose VMs have distinct non-empty names and samples in strictly increasing time from 0, with
// demand (and LFC working set) within the simulator's limits, that a trace workload replays.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "autoscale/sim/trace.h"
#include "glog/logging.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace autoscale::sim;  // NOLINT: a fuzz driver
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Trace> trace = ParseTraceCsv(text, "fuzz.csv");
  if (!trace.ok()) {
    CHECK(absl::StartsWith(trace.status().message(), "fuzz.csv")) << trace.status();
    return 0;
  }
  CHECK(!trace->vms.empty());
  auto shared = std::make_shared<const Trace>(*std::move(trace));
  std::set<std::string> names;
  absl::Duration first = absl::InfiniteDuration(), last = absl::ZeroDuration();
  for (size_t v = 0; v < shared->vms.size(); ++v) {
    const TraceVm& vm = shared->vms[v];
    CHECK(!vm.name.empty());
    CHECK(names.insert(vm.name).second) << "VM " << vm.name << " twice";
    CHECK(!vm.samples.empty());
    std::unique_ptr<Workload> w = NewTraceWorkload(shared, v);
    for (size_t i = 0; i < vm.samples.size(); ++i) {
      const TraceSample& s = vm.samples[i];
      if (i > 0) CHECK_LT(vm.samples[i - 1].time, s.time);
      CHECK_GE(s.demand.milli_cpu, 0);
      CHECK_LE(s.demand.milli_cpu, kMaxMilliCpu);
      CHECK_GE(s.demand.memory_bytes, 0);
      CHECK_LE(s.demand.memory_bytes, kMaxMemoryBytes);
      CHECK_GE(s.demand.lfc_working_set_bytes, 0);
      CHECK_LE(s.demand.lfc_working_set_bytes, kMaxMemoryBytes);
      CHECK(w->At(s.time) == s.demand);
      first = std::min(first, s.time);
      last = std::max(last, s.time);
    }
  }
  CHECK_EQ(first, absl::ZeroDuration()) << "the earliest sample starts the trace";
  CHECK_EQ(last, shared->end);
  return 0;
}
