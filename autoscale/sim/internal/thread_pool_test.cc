#include "autoscale/sim/internal/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace autoscale::sim {
namespace {

TEST(ThreadPoolTest, RunsEveryItemOnceInEveryRound) {
  for (int threads : {0, 1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), static_cast<size_t>(std::max(threads, 1)));
    // Many short rounds in a row, of every size: a worker late for one round must not run items
    // of the next, nor miss any.
    for (size_t round = 0; round < 300; ++round) {
      const size_t n = round % 13;
      std::vector<std::atomic<int>> runs(n);
      pool.For(n, [&](size_t i) { runs[i].fetch_add(1, std::memory_order_relaxed); });
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(runs[i].load(), 1) << threads << " threads, round " << round << ", item " << i;
      }
    }
  }
}

TEST(ThreadPoolTest, SharesTheWorkWithItsWorkers) {
  ThreadPool pool(2);
  absl::Mutex mu;
  std::vector<std::thread::id> ran_on;
  // Each item waits until both threads hold one, so the worker must have taken one.
  int started = 0;
  pool.For(2, [&](size_t) {
    absl::MutexLock l(&mu);
    ran_on.push_back(std::this_thread::get_id());
    ++started;
    mu.Await(absl::Condition(
        +[](int* s) { return *s == 2; }, &started));
  });
  ASSERT_EQ(ran_on.size(), 2u);
  EXPECT_NE(ran_on[0], ran_on[1]);
}

}  // namespace
}  // namespace autoscale::sim
