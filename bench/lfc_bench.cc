// The LFC's hot paths against baselines measured in the same run:
//   BM_EstimatorAdd vs BM_ExactSetInsert: cost per page access and memory of the sliding-window
//     HyperLogLog against an exact std::unordered_set of page ids (which cannot even answer
//     windows), over a stream of 4 accesses per distinct page;
//   BM_EstimatorMinuteWindows: the 60-window query;
//   BM_CacheHit vs BM_PreadPage: a cache read that hits against a bare pread of the same 8 KiB;
//     BM_CacheMiss is the bookkeeping alone (lock, lookup, clock, estimator; no I/O).
// Run (the command is in bench/RESULTS.md):
//   bazel run --config=opt //bench:lfc_bench -- --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "benchmark/benchmark.h"
#include "lfc/cache.h"
#include "lfc/working_set_estimator.h"

namespace autoscale::lfc {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

// 4 * distinct accesses, uniformly over `distinct` random page ids.
std::vector<uint64_t> AccessStream(int64_t distinct) {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> pages(distinct);
  for (uint64_t& page : pages) page = rng();
  std::vector<uint64_t> stream(4 * distinct);
  for (uint64_t& access : stream) access = pages[rng() % distinct];
  return stream;
}

// Seconds of the stream: a new second every 4096 accesses.
absl::Time TimeOf(size_t index) {
  return kStart + absl::Seconds(static_cast<int64_t>(index >> 12));
}

void BM_EstimatorAdd(benchmark::State& state) {
  const std::vector<uint64_t> stream = AccessStream(state.range(0));
  WorkingSetEstimator::Options options;
  options.precision = static_cast<int>(state.range(1));
  double estimate = 0;
  size_t memory = 0;
  for (auto _ : state) {
    WorkingSetEstimator estimator(options);
    for (size_t i = 0; i < stream.size(); ++i) estimator.Add(stream[i], TimeOf(i));
    estimate = *estimator.Estimate(absl::Minutes(60), TimeOf(stream.size()));
    memory = estimator.MemoryBytes();
    benchmark::DoNotOptimize(estimate);
  }
  const double exact =
      static_cast<double>(std::unordered_set<uint64_t>(stream.begin(), stream.end()).size());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(stream.size()));
  state.counters["ns_per_add"] = benchmark::Counter(
      static_cast<double>(stream.size()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert, benchmark::Counter::kIs1000);
  state.counters["memory_bytes"] = static_cast<double>(memory);
  state.counters["rel_error_pct"] = 100 * std::abs(estimate - exact) / exact;
}
BENCHMARK(BM_EstimatorAdd)
    ->ArgNames({"distinct", "precision"})
    ->Args({100'000, 15})
    ->Args({1'000'000, 15})
    ->Args({4'000'000, 15})
    ->Args({1'000'000, 10})
    ->Unit(benchmark::kMillisecond);

// Bytes requested from the allocator by the exact set (nodes and buckets; malloc's own
// overhead comes on top).
size_t g_set_bytes = 0;

template <typename T>
struct CountingAllocator {
  using value_type = T;
  CountingAllocator() = default;
  template <typename U>
  CountingAllocator(const CountingAllocator<U>&) {}  // NOLINT: allocator rebinding
  T* allocate(size_t n) {
    g_set_bytes += n * sizeof(T);
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, size_t n) {
    g_set_bytes -= n * sizeof(T);
    std::allocator<T>().deallocate(p, n);
  }
  bool operator==(const CountingAllocator&) const { return true; }
};

void BM_ExactSetInsert(benchmark::State& state) {
  const std::vector<uint64_t> stream = AccessStream(state.range(0));
  size_t memory = 0;
  size_t count = 0;
  for (auto _ : state) {
    std::unordered_set<uint64_t, std::hash<uint64_t>, std::equal_to<uint64_t>,
                       CountingAllocator<uint64_t>>
        set;
    for (uint64_t page : stream) set.insert(page);
    count = set.size();
    memory = g_set_bytes;
    benchmark::DoNotOptimize(count);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(stream.size()));
  state.counters["ns_per_add"] = benchmark::Counter(
      static_cast<double>(stream.size()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert, benchmark::Counter::kIs1000);
  state.counters["memory_bytes"] = static_cast<double>(memory);
}
BENCHMARK(BM_ExactSetInsert)
    ->ArgNames({"distinct"})
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->Arg(4'000'000)
    ->Unit(benchmark::kMillisecond);

// The cost of reading the real clock, which the cache does on every access.
void BM_EstimatorAddRealClock(benchmark::State& state) {
  const std::vector<uint64_t> stream = AccessStream(1'000'000);
  WorkingSetEstimator estimator;
  Clock& clock = Clock::Real();
  size_t i = 0;
  for (auto _ : state) {
    estimator.Add(stream[i], clock.Now());
    if (++i == stream.size()) i = 0;
  }
}
BENCHMARK(BM_EstimatorAddRealClock);

void BM_EstimatorMinuteWindows(benchmark::State& state) {
  const std::vector<uint64_t> stream = AccessStream(1'000'000);
  WorkingSetEstimator::Options options;
  options.precision = static_cast<int>(state.range(0));
  WorkingSetEstimator estimator(options);
  // Spread the accesses over the hour, so registers hold many different stamps.
  for (size_t i = 0; i < stream.size(); ++i) {
    estimator.Add(stream[i],
                  kStart + absl::Seconds(static_cast<int64_t>(i * 3600 / stream.size())));
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(estimator.MinuteWindows(kStart + absl::Minutes(60)));
  }
}
BENCHMARK(BM_EstimatorMinuteWindows)
    ->ArgNames({"precision"})
    ->Arg(10)
    ->Arg(15)
    ->Unit(benchmark::kMicrosecond);

constexpr uint32_t kPageSize = 8192;
constexpr uint64_t kCachedPages = 8192;  // 64 MiB: stays in the page cache, as the LFC's file

std::string BenchPath() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/lfc_bench.cache";
}

std::vector<uint64_t> RandomPages() {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> pages(1 << 16);
  for (uint64_t& page : pages) page = rng() % kCachedPages;
  return pages;
}

void BM_CacheHit(benchmark::State& state) {
  CacheOptions options;
  options.path = BenchPath();
  options.size_bytes = kCachedPages * kPageSize;
  absl::StatusOr<std::unique_ptr<LocalFileCache>> cache =
      LocalFileCache::Open(options, Clock::Real());
  if (!cache.ok()) {
    state.SkipWithError(cache.status().ToString().c_str());
    return;
  }
  std::vector<std::byte> buffer(kPageSize, std::byte{1});
  for (uint64_t page = 0; page < kCachedPages; ++page) {
    if (!(*cache)->Write(page, buffer).ok()) state.SkipWithError("write failed");
  }
  const std::vector<uint64_t> pages = RandomPages();
  size_t i = 0;
  for (auto _ : state) {
    absl::StatusOr<bool> hit = (*cache)->Read(pages[i], buffer);
    if (!hit.ok() || !*hit) state.SkipWithError("expected a hit");
    i = (i + 1) & (pages.size() - 1);
  }
  state.SetBytesProcessed(state.iterations() * kPageSize);
  unlink(options.path.c_str());
}
BENCHMARK(BM_CacheHit);

// The bookkeeping alone: a read that misses takes the lock, looks the chunk up and feeds the
// estimator, but does no I/O.
void BM_CacheMiss(benchmark::State& state) {
  CacheOptions options;
  options.path = BenchPath();
  options.size_bytes = kCachedPages * kPageSize;
  absl::StatusOr<std::unique_ptr<LocalFileCache>> cache =
      LocalFileCache::Open(options, Clock::Real());
  if (!cache.ok()) {
    state.SkipWithError(cache.status().ToString().c_str());
    return;
  }
  std::vector<std::byte> buffer(kPageSize);
  const std::vector<uint64_t> pages = RandomPages();
  size_t i = 0;
  for (auto _ : state) {
    absl::StatusOr<bool> hit = (*cache)->Read(pages[i], buffer);
    if (!hit.ok() || *hit) state.SkipWithError("expected a miss");
    i = (i + 1) & (pages.size() - 1);
  }
  unlink(options.path.c_str());
}
BENCHMARK(BM_CacheMiss);

// The floor: pread of the same pages from a file of the same size, no bookkeeping.
void BM_PreadPage(benchmark::State& state) {
  const std::string path = BenchPath() + ".raw";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    state.SkipWithError("cannot open the file");
    return;
  }
  std::vector<std::byte> buffer(kPageSize, std::byte{1});
  for (uint64_t page = 0; page < kCachedPages; ++page) {
    if (pwrite(fd, buffer.data(), kPageSize, static_cast<off_t>(page * kPageSize)) != kPageSize) {
      state.SkipWithError("write failed");
    }
  }
  const std::vector<uint64_t> pages = RandomPages();
  size_t i = 0;
  for (auto _ : state) {
    if (pread(fd, buffer.data(), kPageSize, static_cast<off_t>(pages[i] * kPageSize)) !=
        kPageSize) {
      state.SkipWithError("read failed");
    }
    i = (i + 1) & (pages.size() - 1);
  }
  state.SetBytesProcessed(state.iterations() * kPageSize);
  close(fd);
  unlink(path.c_str());
}
BENCHMARK(BM_PreadPage);

}  // namespace
}  // namespace autoscale::lfc
