// A small pool of threads for the simulator's steps: For(n, fn) runs fn(0..n-1) on the calling
// thread and the workers and returns when all are done. The simulator calls it once per run of
// steps with a few items per thread, so it is built for many short rounds: items are claimed with
// one atomic counter, and a worker that wakes late for one round cannot take items of the next
// (items are claimed with the round's number).
//
//   ThreadPool pool(2);                       // the caller and one worker
//   pool.For(nodes, [&](size_t i) { Step(i); });
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace autoscale::sim {

class ThreadPool {
 public:
  // `threads` counts the caller: threads - 1 workers are started (none for 1 or less).
  explicit ThreadPool(int threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t threads() const { return workers_.size() + 1; }

  // Runs fn(i) for every i in [0, n), each once, on any of the threads; returns when all are done.
  // Called from one thread at a time.
  void For(size_t n, const std::function<void(size_t)>& fn);

 private:
  struct Waiter {
    const ThreadPool* pool;
    uint32_t seen;
  };
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_.load(std::memory_order_acquire) == n_;
  }
  // Await holds mu_ while it evaluates the condition.
  static bool Woken(Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return w->pool->stop_ || w->pool->round_ != w->seen;
  }
  void Drain(uint32_t round, size_t n, const std::function<void(size_t)>& fn);
  void Work();

  // Guards the round's description.
  absl::Mutex mu_;
  // Workers wake for each new round; one that wakes too late finds nothing left to claim.
  uint32_t round_ ABSL_GUARDED_BY(mu_) = 0;
  const std::function<void(size_t)>* fn_ ABSL_GUARDED_BY(mu_) = nullptr;
  size_t n_ ABSL_GUARDED_BY(mu_) = 0;
  // Items of the round finished (reset under mu_ between rounds).
  std::atomic<size_t> done_{0};
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // The round (high 32 bits) and its next unclaimed item.
  std::atomic<uint64_t> cursor_{0};
  std::vector<std::thread> workers_;
};

}  // namespace autoscale::sim
