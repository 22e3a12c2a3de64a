// Placement scoring: how well a node suits a new VM (or a migrating one), after the reference
// scheduler plugin (neon-autoscaling.md section 3.6).
//
// Per resource, with x = reserved / total once the VM is added:
//   score = y0 + (1 - y0) / xp * x            for x < xp   (fill nodes up towards the peak ...)
//         = y1 + (1 - y1) / (1 - xp) * (1 - x) for x > xp   (... but keep room for growth)
//         = 1                                 for x == xp
// weighted by total / (largest total of any node), so bigger nodes are preferred. A node's score
// is the smaller of its CPU and memory scores, as an integer 0..100. With `randomize`, each node's
// score is drawn uniformly from [1, score] (the reference's NormalizeScore), so equal and similar
// nodes share the load; ties are broken at random.
//
//   int64_t s = NodeScore(options, reserved_after, total, largest_total);
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "autoscale/core/resources.h"

namespace autoscale::ledger {

struct PlacementOptions {
  // y0: the score of an empty node; y1: the score of a full one; xp: the usage that scores best.
  double min_usage_score = 0.5;
  double max_usage_score = 0;
  double score_peak = 0.8;
  bool randomize = true;
};

inline constexpr int64_t kMaxNodeScore = 100;

// The score in [0, 1] of one resource: `reserved` of `total` in use, `largest_total` the largest
// total of any node (> 0).
double ResourceScore(const PlacementOptions& options, int64_t reserved, int64_t total,
                     int64_t largest_total);

// The node's score, 0..kMaxNodeScore: the smaller resource score.
int64_t NodeScore(const PlacementOptions& options, const core::Resources& reserved,
                  const core::Resources& total, const core::Resources& largest_total);

// Indices of `scores`, best first: by score (drawn from [1, score] when randomized), ties in
// random order.
std::vector<size_t> RankScores(const std::vector<int64_t>& scores, bool randomize,
                               std::mt19937_64& rng);

}  // namespace autoscale::ledger
