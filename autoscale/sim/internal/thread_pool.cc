#include "autoscale/sim/internal/thread_pool.h"

namespace autoscale::sim {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { Work(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::For(size_t n, const std::function<void(size_t)>& fn) {
  if (workers_.empty() || n <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  uint32_t round;
  {
    absl::MutexLock l(&mu_);
    round = ++round_;
    fn_ = &fn;
    n_ = n;
    done_.store(0, std::memory_order_relaxed);
    cursor_.store(uint64_t{round} << 32, std::memory_order_release);
  }
  Drain(round, n, fn);
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(this, &ThreadPool::AllDone));
}

void ThreadPool::Drain(uint32_t round, size_t n, const std::function<void(size_t)>& fn) {
  uint64_t c = cursor_.load(std::memory_order_acquire);
  size_t finished = 0;
  for (;;) {
    if ((c >> 32) != round || (c & 0xffffffff) >= n) break;
    if (!cursor_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
    fn(c & 0xffffffff);
    ++finished;
    c = cursor_.load(std::memory_order_acquire);
  }
  if (finished > 0) {
    done_.fetch_add(finished, std::memory_order_acq_rel);
    absl::MutexLock l(&mu_);  // lets a caller waiting in Await see it
  }
}

void ThreadPool::Work() {
  Waiter waiter{this, 0};
  for (;;) {
    uint32_t round;
    size_t n;
    const std::function<void(size_t)>* fn;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(&ThreadPool::Woken, &waiter));
      if (stop_) return;
      waiter.seen = round = round_;
      n = n_;
      fn = fn_;
    }
    Drain(round, n, *fn);
  }
}

}  // namespace autoscale::sim
