#include "autoscale/ledger/placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace autoscale::ledger {

double ResourceScore(const PlacementOptions& o, int64_t reserved, int64_t total,
                     int64_t largest_total) {
  if (total <= 0 || largest_total <= 0) return 0;
  const double x = static_cast<double>(reserved) / static_cast<double>(total);
  const double y0 = o.min_usage_score, y1 = o.max_usage_score, xp = o.score_peak;
  double score;
  if (x < xp) {
    score = y0 + (1 - y0) / xp * x;
  } else if (x > xp) {
    score = y1 + (1 - y1) / (1 - xp) * (1 - x);
  } else {
    score = 1;
  }
  score *= static_cast<double>(total) / static_cast<double>(largest_total);
  return std::clamp(score, 0.0, 1.0);
}

int64_t NodeScore(const PlacementOptions& o, const core::Resources& reserved,
                  const core::Resources& total, const core::Resources& largest_total) {
  const double cpu = ResourceScore(o, reserved.milli_cpu, total.milli_cpu, largest_total.milli_cpu);
  const double mem =
      ResourceScore(o, reserved.memory_bytes, total.memory_bytes, largest_total.memory_bytes);
  return static_cast<int64_t>(std::floor(kMaxNodeScore * std::min(cpu, mem)));
}

std::vector<size_t> RankScores(const std::vector<int64_t>& scores, bool randomize,
                               std::mt19937_64& rng) {
  std::vector<int64_t> drawn = scores;
  if (randomize) {
    for (int64_t& s : drawn) {
      if (s > 1) s = std::uniform_int_distribution<int64_t>(1, s)(rng);
    }
  }
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return drawn[a] > drawn[b]; });
  return order;
}

}  // namespace autoscale::ledger
