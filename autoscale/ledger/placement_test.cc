#include "autoscale/ledger/placement.h"

#include <map>
#include <random>

#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

using core::Resources;

TEST(ResourceScoreTest, PiecewiseWithThePeakAtPointEight) {
  PlacementOptions o;
  EXPECT_DOUBLE_EQ(ResourceScore(o, 0, 100, 100), 0.5);  // y0: empty
  EXPECT_DOUBLE_EQ(ResourceScore(o, 40, 100, 100), 0.5 + 0.5 / 0.8 * 0.4);
  EXPECT_DOUBLE_EQ(ResourceScore(o, 80, 100, 100), 1);  // the peak
  EXPECT_NEAR(ResourceScore(o, 90, 100, 100), 0.5, 1e-9);
  EXPECT_DOUBLE_EQ(ResourceScore(o, 100, 100, 100), 0);  // y1: full
  // Weighted by total / largest total.
  EXPECT_DOUBLE_EQ(ResourceScore(o, 80, 100, 200), 0.5);
}

TEST(NodeScoreTest, TheSmallerResourceDecides) {
  PlacementOptions o;
  // CPU at the peak (1.0), memory empty (0.5): 50.
  EXPECT_EQ(NodeScore(o, {800, 0}, {1000, 100}, {1000, 100}), 50);
  EXPECT_EQ(NodeScore(o, {800, 80}, {1000, 100}, {1000, 100}), kMaxNodeScore);
}

TEST(RankScoresTest, BestFirstWithoutRandomization) {
  std::mt19937_64 rng(1);
  std::vector<size_t> order = RankScores({10, 70, 40}, false, rng);
  EXPECT_EQ(order, (std::vector<size_t>{1, 2, 0}));
}

TEST(RankScoresTest, TiesAreBrokenAtRandom) {
  std::mt19937_64 rng(1);
  std::map<size_t, int> first;
  for (int i = 0; i < 300; ++i) ++first[RankScores({50, 50, 50}, false, rng)[0]];
  ASSERT_EQ(first.size(), 3u);
  for (const auto& [index, n] : first) EXPECT_GT(n, 60) << index;
}

TEST(RankScoresTest, RandomizationDrawsFromOneToTheScore) {
  // 100 vs 50: drawn uniformly from [1, 100] and [1, 50], the lower one still wins sometimes
  // (about a quarter of the time), never a zero score over a positive one.
  std::mt19937_64 rng(1);
  int low_wins = 0;
  for (int i = 0; i < 1000; ++i) {
    std::vector<size_t> order = RankScores({100, 50, 0}, true, rng);
    EXPECT_EQ(order[2], 2u);
    if (order[0] == 1) ++low_wins;
  }
  EXPECT_GT(low_wins, 150);
  EXPECT_LT(low_wins, 350);
}

}  // namespace
}  // namespace autoscale::ledger
