#include "autoscale/sim/workload.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/units.h"
#include "autoscale/sim/internal/fast_math.h"
#include "autoscale/sim/internal/random.h"
#include "glog/logging.h"

namespace autoscale::sim {
namespace {

constexpr double kDay = 86400;
constexpr int64_t kPageBytes = 8192;
// Salts the seed of a VM's working-set draws, a stream apart from its demand's.
constexpr uint64_t kWorkingSetSalt = 0x9d8c5a1f3e2b4c67ULL;

// Smooth noise: a first-order autoregressive process, one draw per step, within [-2.5, 2.5] and
// a standard deviation of about 0.5.
class Noise {
 public:
  double Next(Rng& rng) { return value_ = 0.8 * value_ + 0.2 * rng.Uniform(-1, 1) * 2.5; }

 private:
  double value_ = 0;
};

Demand ToDemand(double cpu_cores, double memory_gib) {
  const double mem = std::max(memory_gib * kGiB, 64.0 * kMiB);
  return {RoundToInt(std::max(cpu_cores, 0.0) * 1000),
          static_cast<int64_t>(Floor(mem / kMiB)) * kMiB};
}

// A VM's LFC working set: base + per_core * CPU cores (GiB), its two numbers drawn once.
class WorkingSet {
 public:
  WorkingSet(uint64_t seed, const WorkingSetDistribution& d) {
    Rng rng(Mix64(seed ^ kWorkingSetSalt));
    base_gib_ = d.base_gib_min * std::pow(d.base_gib_max / d.base_gib_min, rng.Uniform());
    per_core_gib_ = rng.Uniform(d.per_core_gib_min, d.per_core_gib_max);
  }

  // `d` with its working set, in whole pages, at most the simulator's memory limit.
  Demand Add(Demand d) const {
    const double gib = base_gib_ + per_core_gib_ * static_cast<double>(d.milli_cpu) / 1000;
    const double pages = std::min(gib * kGiB, static_cast<double>(kMaxMemoryBytes)) / kPageBytes;
    d.lfc_working_set_bytes = static_cast<int64_t>(pages) * kPageBytes;
    return d;
  }

 private:
  double base_gib_ = 0;
  double per_core_gib_ = 0;
};

// A period of extra load: rises linearly, holds, falls linearly.
struct Episode {
  double start = 0, rise = 0, hold = 0, fall = 0;
  double cpu_cores = 0, memory_gib = 0;

  double end() const { return start + rise + hold + fall; }
  // 0 outside, 1 while holding.
  double Level(double t) const {
    if (t < start || t >= end()) return 0;
    if (t < start + rise) return (t - start) / rise;
    if (t < start + rise + hold) return 1;
    return 1 - (t - start - rise - hold) / fall;
  }
};

// A workload with a base load and random episodes on top of it.
class EpisodicWorkload : public Workload {
 public:
  EpisodicWorkload(uint64_t seed, const WorkingSetDistribution& ws)
      : rng_(seed), working_set_(seed, ws) {}

  Demand At(absl::Duration t) final {
    const double s = ToSeconds(t);
    if (!started_) {
      episode_ = Draw(0);
      started_ = true;
    }
    while (s >= episode_.end()) episode_ = Draw(episode_.end());
    const double level = episode_.Level(s);
    const double cpu =
        (base_cpu_ + level * episode_.cpu_cores) * (1 + cpu_noise_ * noise_cpu_.Next(rng_));
    const double mem = (base_memory_gib_ + level * episode_.memory_gib) *
                       (1 + memory_noise_ * noise_mem_.Next(rng_));
    return working_set_.Add(ToDemand(cpu, mem));
  }

 protected:
  // The next episode, starting after `after` seconds.
  virtual Episode Draw(double after) = 0;

  Rng rng_;
  double base_cpu_ = 0;
  double base_memory_gib_ = 0;
  double cpu_noise_ = 0.1;
  double memory_noise_ = 0.02;

 private:
  bool started_ = false;
  Episode episode_;
  Noise noise_cpu_, noise_mem_;
  WorkingSet working_set_;
};

class Bursty final : public EpisodicWorkload {
 public:
  Bursty(uint64_t seed, const WorkingSetDistribution& ws) : EpisodicWorkload(seed, ws) {
    base_cpu_ = rng_.Uniform(0.1, 0.4);
    base_memory_gib_ = rng_.Uniform(1, 2);
  }
  std::string kind() const override { return "bursty"; }

 private:
  Episode Draw(double after) override {
    return {.start = after + rng_.Exponential(1200),
            .rise = rng_.Uniform(5, 20),
            .hold = 30 + rng_.Exponential(210),
            .fall = 60,
            .cpu_cores = rng_.Uniform(1, 3.5),
            .memory_gib = rng_.Uniform(0.5, 3)};
  }
};

class Spike final : public EpisodicWorkload {
 public:
  Spike(uint64_t seed, const WorkingSetDistribution& ws) : EpisodicWorkload(seed, ws) {
    base_cpu_ = rng_.Uniform(0.2, 0.8);
    base_memory_gib_ = rng_.Uniform(1.5, 3);
  }
  std::string kind() const override { return "spike"; }

 private:
  Episode Draw(double after) override {
    return {.start = after + rng_.Exponential(2700),
            .rise = rng_.Uniform(5, 30),
            .hold = rng_.Uniform(60, 300),
            .fall = 30,
            .cpu_cores = 0.3,
            .memory_gib = rng_.Uniform(3, 8)};
  }
};

class Idle final : public EpisodicWorkload {
 public:
  Idle(uint64_t seed, const WorkingSetDistribution& ws) : EpisodicWorkload(seed, ws) {
    base_cpu_ = rng_.Uniform(0.01, 0.05);
    base_memory_gib_ = rng_.Uniform(0.4, 0.8);
  }
  std::string kind() const override { return "idle"; }

 private:
  Episode Draw(double after) override {
    return {.start = after + rng_.Exponential(3 * 3600),
            .rise = 60,
            .hold = rng_.Uniform(300, 1200),
            .fall = 60,
            .cpu_cores = rng_.Uniform(1, 2.5),
            .memory_gib = rng_.Uniform(1, 3)};
  }
};

class Diurnal final : public Workload {
 public:
  Diurnal(uint64_t seed, const WorkingSetDistribution& ws) : rng_(seed), working_set_(seed, ws) {
    phase_ = rng_.Uniform(0, kDay);
    trough_ = rng_.Uniform(0.05, 0.3);
    peak_ = rng_.Uniform(0.8, 3.0);
    sharpness_ = 1 + static_cast<int>(rng_.Uniform(0, 3));
    memory_base_gib_ = rng_.Uniform(1, 2.5);
    memory_swing_gib_ = rng_.Uniform(1, 5);
  }
  std::string kind() const override { return "diurnal"; }

  Demand At(absl::Duration t) override {
    const double s = ToSeconds(t);
    const double shape = Shape(s);
    // Memory follows the load (caches, connections) with a lag of about 20 minutes.
    if (last_ < 0) {
      memory_level_ = Shape(s - 1200);
    } else {
      if (s - last_ != last_gap_) {
        last_gap_ = s - last_;
        decay_ = std::exp(-last_gap_ / 1200);
      }
      memory_level_ = memory_level_ * decay_ + shape * (1 - decay_);
    }
    last_ = s;
    const double cpu = (trough_ + (peak_ - trough_) * shape) * (1 + 0.15 * noise_cpu_.Next(rng_));
    const double mem =
        (memory_base_gib_ + memory_swing_gib_ * memory_level_) * (1 + 0.02 * noise_mem_.Next(rng_));
    return working_set_.Add(ToDemand(cpu, mem));
  }

 private:
  // 0 at night, 1 at the peak; sharper peaks for higher powers.
  double Shape(double s) const {
    const double x = 0.5 - 0.5 * std::cos(2 * std::numbers::pi * (s + phase_) / kDay);
    return sharpness_ == 1 ? x : sharpness_ == 2 ? x * x : x * x * x;
  }

  Rng rng_;
  double phase_, trough_, peak_, memory_base_gib_, memory_swing_gib_;
  int sharpness_;
  double memory_level_ = 0;
  double last_ = -1;
  // The decay of memory_level_ over the last gap between calls (steps are regular).
  double last_gap_ = -1;
  double decay_ = 0;
  Noise noise_cpu_, noise_mem_;
  WorkingSet working_set_;
};

class Ramp final : public Workload {
 public:
  Ramp(uint64_t seed, const WorkingSetDistribution& ws) : rng_(seed), working_set_(seed, ws) {
    period_ = rng_.Uniform(2 * 3600, 8 * 3600);
    offset_ = rng_.Uniform(0, period_);
    high_cpu_ = rng_.Uniform(1.5, 3.5);
    low_memory_gib_ = rng_.Uniform(0.8, 1.5);
    high_memory_gib_ = rng_.Uniform(4, 12);
  }
  std::string kind() const override { return "ramp"; }

  Demand At(absl::Duration t) override {
    const double x = std::fmod(ToSeconds(t) + offset_, period_) / period_;
    const double cpu = (0.05 + (high_cpu_ - 0.05) * x) * (1 + 0.1 * noise_cpu_.Next(rng_));
    const double mem = (low_memory_gib_ + (high_memory_gib_ - low_memory_gib_) * x) *
                       (1 + 0.02 * noise_mem_.Next(rng_));
    return working_set_.Add(ToDemand(cpu, mem));
  }

 private:
  Rng rng_;
  double period_, offset_, high_cpu_, low_memory_gib_, high_memory_gib_;
  Noise noise_cpu_, noise_mem_;
  WorkingSet working_set_;
};

}  // namespace

const char* WorkloadKindName(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kDiurnal:
      return "diurnal";
    case WorkloadKind::kBursty:
      return "bursty";
    case WorkloadKind::kRamp:
      return "ramp";
    case WorkloadKind::kSpike:
      return "spike";
    case WorkloadKind::kIdle:
      return "idle";
  }
  return "?";
}

absl::StatusOr<WorkloadKind> ParseWorkloadKind(std::string_view name) {
  for (WorkloadKind k : kAllWorkloadKinds) {
    if (name == WorkloadKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown workload kind '", std::string(name),
                                                 "' (known: diurnal, bursty, ramp, spike, idle)"));
}

absl::Status ValidateWorkingSetDistribution(const WorkingSetDistribution& d) {
  constexpr double kMax = 1e6;
  auto range = [&](const char* name, double lo, double hi, bool positive) -> absl::Status {
    if (!(lo >= 0 && lo <= hi && hi <= kMax) || (positive && !(lo > 0))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "working set distribution: ", name, " must satisfy ",
          positive ? "0 < " : "0 <= ", "min <= max <= ", kMax, " GiB, got ", lo, "..", hi));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = range("base_gib", d.base_gib_min, d.base_gib_max, true); !s.ok()) return s;
  return range("per_core_gib", d.per_core_gib_min, d.per_core_gib_max, false);
}

std::unique_ptr<Workload> NewWorkload(WorkloadKind kind, uint64_t seed,
                                      const WorkingSetDistribution& ws) {
  const absl::Status valid = ValidateWorkingSetDistribution(ws);
  CHECK(valid.ok()) << valid;
  switch (kind) {
    case WorkloadKind::kDiurnal:
      return std::make_unique<Diurnal>(seed, ws);
    case WorkloadKind::kBursty:
      return std::make_unique<Bursty>(seed, ws);
    case WorkloadKind::kRamp:
      return std::make_unique<Ramp>(seed, ws);
    case WorkloadKind::kSpike:
      return std::make_unique<Spike>(seed, ws);
    case WorkloadKind::kIdle:
      return std::make_unique<Idle>(seed, ws);
  }
  return nullptr;
}

absl::StatusOr<WorkloadMix> ParseWorkloadMix(std::string_view text_view) {
  const std::string text(text_view);
  WorkloadMix mix;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    const std::string ctx = absl::StrCat("workload mix '", text, "': entry '", entry, "'");
    if (entry.empty()) return absl::InvalidArgumentError(absl::StrCat(ctx, " is empty"));
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits(':', 1));
    absl::StatusOr<WorkloadKind> kind =
        ParseWorkloadKind(std::string_view(kv.first.data(), kv.first.size()));
    if (!kind.ok())
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": ", kind.status().message()));
    double weight = 1;
    if (entry.find(':') != absl::string_view::npos &&
        (!absl::SimpleAtod(kv.second, &weight) || !(weight > 0) || !std::isfinite(weight))) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": the weight must be a number > 0, got '", kv.second, "'"));
    }
    for (const auto& [k, w] : mix.weights) {
      if (k == *kind) return absl::InvalidArgumentError(absl::StrCat(ctx, ": kind given twice"));
    }
    mix.weights.emplace_back(*kind, weight);
  }
  return mix;
}

WorkloadMix DefaultWorkloadMix() {
  return {{{WorkloadKind::kDiurnal, 4},
           {WorkloadKind::kBursty, 2},
           {WorkloadKind::kRamp, 1},
           {WorkloadKind::kSpike, 1},
           {WorkloadKind::kIdle, 2}}};
}

std::vector<std::unique_ptr<Workload>> MakeWorkloads(const WorkloadMix& mix, size_t count,
                                                     uint64_t seed) {
  std::vector<std::unique_ptr<Workload>> out;
  if (mix.weights.empty()) return out;
  // Smooth weighted round robin: exact proportions, kinds interleaved.
  double total = 0;
  for (const auto& [kind, w] : mix.weights) total += w;
  std::vector<double> current(mix.weights.size(), 0);
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    size_t best = 0;
    for (size_t k = 0; k < current.size(); ++k) {
      current[k] += mix.weights[k].second;
      if (current[k] > current[best]) best = k;
    }
    current[best] -= total;
    out.push_back(NewWorkload(mix.weights[best].first, StreamSeed(seed, i, kWorkloadStream),
                              mix.working_set));
  }
  return out;
}

}  // namespace autoscale::sim
