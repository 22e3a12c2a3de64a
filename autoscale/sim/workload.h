// What simulated VMs ask for over time: built-in generators and a mix of them.
//
// A Workload gives a VM's demand (the CPU it would use and the memory it needs) at each step of a
// simulation. The generators are seeded, so the same seed gives the same demand whatever the
// scaling policy does: two policies can be compared on identical load. Traces read from CSV files
// are in trace.h.
//
//   absl::StatusOr<WorkloadMix> mix = ParseWorkloadMix("diurnal:3,bursty:2,idle:1");
//   std::vector<std::unique_ptr<Workload>> w = MakeWorkloads(*mix, /*count=*/500, /*seed=*/1);
//   Demand d = w[0]->At(absl::Minutes(10));  // d.milli_cpu, d.memory_bytes
//
// The built-in kinds (sized for the default compute unit 0.25 vCPU / 1 GiB and VMs of 1..16 CU):
//   diurnal  a daily cycle with a random phase (time zone), CPU 0.05..3 cores, memory following
//            the load 20 minutes later;
//   bursty   a low base with CPU bursts of a few minutes every ~20 minutes;
//   ramp     a steady rise over 2..8 hours from almost nothing to a high load, then a drop and
//            again (a batch job or a growing tenant);
//   spike    moderate CPU with memory spikes of 3..8 GiB that arrive within seconds (a large
//            query or an index build), held for minutes, every ~45 minutes;
//   idle     almost nothing, with a rare burst every few hours.
// Every kind adds smooth random noise. Each VM also touches pages through its Local File Cache:
// its LFC working set grows with its CPU demand (WorkingSetDistribution below), which the
// simulator turns into the LFC metrics of the core's cache goal when scaling.enableLFCMetrics.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace autoscale::sim {

// The largest CPU and memory figures the simulator accepts for a node, a compute unit or a trace
// sample (10^6 cores, 1 PiB): beyond any machine, and far from int64 overflow.
inline constexpr int64_t kMaxMilliCpu = 1'000'000'000;
inline constexpr int64_t kMaxMemoryBytes = int64_t{1} << 50;

// What a VM asks for at one moment: the CPU it would use if it had it (this is also what its load
// average follows), the memory it needs (non-reclaimable), and the distinct bytes of pages it
// reads or writes through its Local File Cache in a minute (its LFC working set; the simulator
// samples it once a minute, see SimConfig::lfc_new_page_share for how minutes overlap).
struct Demand {
  int64_t milli_cpu = 0;
  int64_t memory_bytes = 0;
  int64_t lfc_working_set_bytes = 0;

  friend bool operator==(const Demand&, const Demand&) = default;
};

class Workload {
 public:
  virtual ~Workload() = default;
  // The demand at `t` since the start. The simulator calls it once per step, with `t` never
  // going back (at 0 twice: first to size the VM), so generators may keep state between calls.
  virtual Demand At(absl::Duration t) = 0;
  // "diurnal", "trace", ... (for reports).
  virtual std::string kind() const = 0;
};

enum class WorkloadKind { kDiurnal, kBursty, kRamp, kSpike, kIdle };

inline constexpr WorkloadKind kAllWorkloadKinds[] = {WorkloadKind::kDiurnal, WorkloadKind::kBursty,
                                                     WorkloadKind::kRamp, WorkloadKind::kSpike,
                                                     WorkloadKind::kIdle};

// "diurnal", "bursty", "ramp", "spike", "idle".
const char* WorkloadKindName(WorkloadKind kind);
// The inverse; the error lists the known names.
absl::StatusOr<WorkloadKind> ParseWorkloadKind(std::string_view name);

// How the generators draw each VM's LFC working set: in a minute the VM touches
// `base + per_core * (its CPU demand in cores)` GiB of distinct pages, with `base` drawn
// log-uniformly from [base_gib_min, base_gib_max] and `per_core` uniformly from
// [per_core_gib_min, per_core_gib_max], once per VM and from a random stream of its own (so the
// CPU and memory demand are the same whatever these are).
struct WorkingSetDistribution {
  double base_gib_min = 0.25;
  double base_gib_max = 4;
  double per_core_gib_min = 0.5;
  double per_core_gib_max = 2;
};

// 0 < min <= max <= 1,000,000 GiB for base (a log-uniform draw needs min > 0), 0 <= min <= max
// <= 1,000,000 for per_core; the error names the field.
absl::Status ValidateWorkingSetDistribution(const WorkingSetDistribution& d);

// One generator of `kind`; its random parameters and noise come from `seed`. `working_set` must
// be valid.
std::unique_ptr<Workload> NewWorkload(WorkloadKind kind, uint64_t seed,
                                      const WorkingSetDistribution& working_set = {});

// Kinds with relative weights, and how their LFC working sets are drawn.
struct WorkloadMix {
  std::vector<std::pair<WorkloadKind, double>> weights;
  WorkingSetDistribution working_set{};
};

// "diurnal:3,bursty:2,idle" (a kind without a weight has weight 1; weights > 0, each kind once).
// Errors name the offending entry.
absl::StatusOr<WorkloadMix> ParseWorkloadMix(std::string_view text);

// The default mix of examples/simulate: every kind, mostly diurnal.
WorkloadMix DefaultWorkloadMix();

// `count` workloads in the mix's proportions (as exact as whole VMs allow), the kinds
// interleaved so that neighbouring VMs differ; VM i's generator is seeded from (seed, i). The
// mix's working-set distribution must be valid.
std::vector<std::unique_ptr<Workload>> MakeWorkloads(const WorkloadMix& mix, size_t count,
                                                     uint64_t seed);

}  // namespace autoscale::sim
