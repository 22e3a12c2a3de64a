// A small, fast, seedable random number generator for the simulator: every VM owns one, so the
// numbers a VM draws depend only on the seed and on that VM's own history, never on how the
// simulation's threads were scheduled. Not for cryptography.
//
//   Rng rng(StreamSeed(seed, vm_index, kWorkloadStream));
//   double u = rng.Uniform();            // [0, 1)
//   double gap = rng.Exponential(1200);  // mean 1200
#pragma once

#include <cmath>
#include <cstdint>

namespace autoscale::sim {

// splitmix64: a good 64-bit mix, used to derive independent seeds.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The independent random streams of one VM: its workload's draws never depend on what its agent
// drew, so two scaling policies see the same demand.
inline constexpr uint64_t kWorkloadStream = 1;
inline constexpr uint64_t kAgentStream = 2;

// The seed of stream `stream` of item `index` under the run's `seed`.
inline uint64_t StreamSeed(uint64_t seed, uint64_t index, uint64_t stream) {
  return Mix64(Mix64(Mix64(seed) ^ index) ^ (stream * 0x632be59bd9b4e019ULL));
}

// xoshiro256** (Blackman and Vigna), seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) s = seed = Mix64(seed);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // True with probability p.
  bool Bernoulli(double p) { return p > 0 && Uniform() < p; }
  // Exponentially distributed with the given mean.
  double Exponential(double mean) { return -mean * std::log1p(-Uniform()); }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace autoscale::sim
