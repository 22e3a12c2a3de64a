#include "lfc/cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <list>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "autoscale/base/clock.h"
#include "gtest/gtest.h"

namespace autoscale::lfc {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

// Page contents that depend on the page and a version, so stale or misplaced data shows.
std::vector<std::byte> Contents(uint64_t page, uint32_t size, uint64_t version = 0) {
  std::vector<std::byte> data(size);
  uint64_t x = page * 0x9E3779B97F4A7C15ULL + version * 0xBF58476D1CE4E5B9ULL + 1;
  for (std::byte& b : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return data;
}

struct Fixture {
  explicit Fixture(const std::string& name, uint64_t size_chunks, uint32_t page_size = 4096,
                   uint32_t pages_per_chunk = 4) {
    CacheOptions options;
    options.path = TempPath(name);
    options.page_size = page_size;
    options.pages_per_chunk = pages_per_chunk;
    options.size_bytes = size_chunks * page_size * pages_per_chunk;
    options.estimator.precision = 10;
    absl::StatusOr<std::unique_ptr<LocalFileCache>> opened = LocalFileCache::Open(options, clock);
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (opened.ok()) cache = std::move(*opened);
  }
  bool Read(uint64_t page, std::vector<std::byte>* out = nullptr) {
    std::vector<std::byte> buffer(cache->page_size());
    absl::StatusOr<bool> hit = cache->Read(page, buffer);
    EXPECT_TRUE(hit.ok()) << hit.status();
    if (out != nullptr) *out = buffer;
    return hit.value_or(false);
  }
  void Write(uint64_t page, uint64_t version = 0) {
    ASSERT_TRUE(cache->Write(page, Contents(page, cache->page_size(), version)).ok());
  }
  struct stat Stat() const {
    struct stat st {};
    EXPECT_EQ(stat(cache->path().c_str(), &st), 0);
    return st;
  }

  ManualClock clock;
  std::unique_ptr<LocalFileCache> cache;
};

TEST(LocalFileCacheTest, WriteThenReadReturnsThePage) {
  Fixture f("basic.cache", 2);
  EXPECT_FALSE(f.Read(5));
  f.Write(5);
  std::vector<std::byte> got;
  EXPECT_TRUE(f.Read(5, &got));
  EXPECT_EQ(got, Contents(5, 4096));
  // Its chunk neighbour (pages 4..7 share a chunk) is not cached.
  EXPECT_FALSE(f.Read(6));
  // Overwrite in place.
  f.Write(5, 1);
  EXPECT_TRUE(f.Read(5, &got));
  EXPECT_EQ(got, Contents(5, 4096, 1));
  const CacheStats stats = f.cache->Stats();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.writes, 2u);
  EXPECT_EQ(stats.used_chunks, 1u);
  EXPECT_EQ(stats.size_chunks, 2u);
  EXPECT_EQ(stats.evicted_chunks, 0u);
}

TEST(LocalFileCacheTest, EvictsLeastRecentlyUsedChunk) {
  Fixture f("lru.cache", 2);
  f.Write(0);              // chunk 0
  f.Write(4);              // chunk 1
  EXPECT_TRUE(f.Read(0));  // chunk 0 is now the most recent
  f.Write(8);              // chunk 2 evicts chunk 1
  EXPECT_TRUE(f.Read(0));
  EXPECT_FALSE(f.Read(4));
  EXPECT_TRUE(f.Read(8));
  EXPECT_EQ(f.cache->Stats().evicted_chunks, 1u);
  EXPECT_EQ(f.cache->Stats().used_chunks, 2u);
}

TEST(LocalFileCacheTest, SizeZeroCachesNothing) {
  Fixture f("off.cache", 0);
  f.Write(1);
  EXPECT_FALSE(f.Read(1));
  EXPECT_EQ(f.cache->Stats().writes, 0u);
  EXPECT_EQ(f.cache->Stats().used_chunks, 0u);
}

TEST(LocalFileCacheTest, ShrinkDropsChunksAtOnceAndPunchesHoles) {
  Fixture f("shrink.cache", 8);
  for (uint64_t page = 0; page < 32; ++page) f.Write(page);
  const struct stat full = f.Stat();
  EXPECT_EQ(full.st_size, 32 * 4096);
  for (uint64_t page = 0; page < 4; ++page) EXPECT_TRUE(f.Read(page));  // chunk 0 most recent

  CacheResizer resizer(*f.cache);
  ASSERT_TRUE(resizer.SetSizeBytes(2 * 4 * 4096 + 100).ok());  // rounds down to 2 chunks
  CacheStats stats = f.cache->Stats();
  EXPECT_EQ(stats.size_chunks, 2u);
  EXPECT_EQ(stats.used_chunks, 2u);
  EXPECT_EQ(stats.evicted_chunks, 6u);
  EXPECT_TRUE(f.Read(0));    // chunk 0: recently read, kept
  EXPECT_TRUE(f.Read(31));   // chunk 7: most recently written, kept
  EXPECT_FALSE(f.Read(12));  // chunk 3: dropped
  // The file keeps its length, but the dropped chunks' blocks are returned (holes).
  const struct stat shrunk = f.Stat();
  EXPECT_EQ(shrunk.st_size, full.st_size);
  EXPECT_LT(shrunk.st_blocks, full.st_blocks)
      << "no blocks returned: does the file system of " << f.cache->path()
      << " support FALLOC_FL_PUNCH_HOLE?";

  // Growing again reuses the holes: the file does not get longer.
  ASSERT_TRUE(resizer.SetSizeBytes(8 * 4 * 4096).ok());
  for (uint64_t page = 100; page < 124; ++page) f.Write(page);
  EXPECT_EQ(f.cache->Stats().used_chunks, 8u);
  EXPECT_EQ(f.Stat().st_size, full.st_size);
  std::vector<std::byte> got;
  for (uint64_t page : {0, 1, 2, 3, 28, 29, 30, 31, 100, 123}) {
    EXPECT_TRUE(f.Read(page, &got)) << page;
    EXPECT_EQ(got, Contents(page, 4096)) << page;
  }
}

// A model of the cache: LRU order of chunks and the version of each cached page.
class Model {
 public:
  Model(uint64_t size_chunks, uint32_t pages_per_chunk)
      : size_(size_chunks), per_chunk_(pages_per_chunk) {}

  // The cached version of the page, or -1. Touches the chunk on a hit.
  int64_t Read(uint64_t page) {
    auto it = FindChunk(page / per_chunk_);
    if (it == lru_.end()) return -1;
    auto version = it->pages.find(page);
    if (version == it->pages.end()) return -1;
    lru_.splice(lru_.begin(), lru_, it);
    return version->second;
  }
  void Write(uint64_t page, int64_t version) {
    if (size_ == 0) return;
    auto it = FindChunk(page / per_chunk_);
    if (it == lru_.end()) {
      if (lru_.size() >= size_) lru_.pop_back();
      lru_.push_front(Chunk{page / per_chunk_, {}});
    } else {
      lru_.splice(lru_.begin(), lru_, it);
    }
    lru_.front().pages[page] = version;
  }
  void Resize(uint64_t size_chunks) {
    size_ = size_chunks;
    while (lru_.size() > size_) lru_.pop_back();
  }
  size_t used() const { return lru_.size(); }

 private:
  struct Chunk {
    uint64_t key;
    std::map<uint64_t, int64_t> pages;
  };
  std::list<Chunk>::iterator FindChunk(uint64_t key) {
    return std::find_if(lru_.begin(), lru_.end(), [&](const Chunk& c) { return c.key == key; });
  }

  uint64_t size_;
  uint32_t per_chunk_;
  std::list<Chunk> lru_;
};

TEST(LocalFileCacheTest, RandomOperationsMatchAModel) {
  constexpr uint32_t kPageSize = 512;
  constexpr uint32_t kPerChunk = 8;
  Fixture f("model.cache", 6, kPageSize, kPerChunk);
  Model model(6, kPerChunk);
  std::mt19937_64 rng(2024);
  uint64_t hits = 0, misses = 0, writes = 0;
  uint64_t size = 6;
  for (int step = 0; step < 20'000; ++step) {
    const uint64_t page = rng() % 120;  // 15 chunks' worth of pages for at most 12 chunks
    const uint64_t op = rng() % 100;
    if (op < 55) {
      std::vector<std::byte> got;
      const bool hit = f.Read(page, &got);
      const int64_t version = model.Read(page);
      ASSERT_EQ(hit, version >= 0) << "step " << step << " page " << page;
      if (hit) {
        ASSERT_EQ(got, Contents(page, kPageSize, version)) << "step " << step;
        ++hits;
      } else {
        ++misses;
      }
    } else if (op < 98) {
      f.Write(page, step);
      model.Write(page, step);
      writes += size > 0;
    } else {
      size = rng() % 13;
      f.cache->Resize(size * kPageSize * kPerChunk);
      model.Resize(size);
    }
    const CacheStats stats = f.cache->Stats();
    ASSERT_EQ(stats.used_chunks, model.used()) << "step " << step;
    ASSERT_LE(stats.used_chunks, stats.size_chunks);
  }
  const CacheStats stats = f.cache->Stats();
  EXPECT_EQ(stats.hits, hits);
  EXPECT_EQ(stats.misses, misses);
  EXPECT_EQ(stats.writes, writes);
  EXPECT_GT(hits, 500u);
  EXPECT_GT(misses, 1'000u);
}

TEST(LocalFileCacheTest, ResizeWhileOtherThreadsReadAndWrite) {
  constexpr uint32_t kPageSize = 4096;
  Fixture f("threads.cache", 16, kPageSize, 4);
  // Every page only ever has one content, so any hit must return exactly it.
  std::atomic<uint64_t> reads{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::byte> buffer(kPageSize);
      for (int i = 0; i < 20'000; ++i) {
        const uint64_t page = rng() % 256;
        absl::StatusOr<bool> hit = f.cache->Read(page, buffer);
        ++reads;
        if (!hit.ok()) {
          failed = true;
          ADD_FAILURE() << hit.status();
          return;
        }
        if (!*hit) {
          if (!f.cache->Write(page, Contents(page, kPageSize)).ok()) failed = true;
        } else if (buffer != Contents(page, kPageSize)) {
          failed = true;
          ADD_FAILURE() << "page " << page << " came back with other contents";
          return;
        }
      }
    });
  }
  threads.emplace_back([&] {
    std::mt19937_64 rng(99);
    for (int i = 0; i < 2'000; ++i) {
      f.cache->Resize((rng() % 40) * 4 * kPageSize);
      const CacheStats stats = f.cache->Stats();
      if (stats.used_chunks > stats.size_chunks) failed = true;
    }
  });
  for (std::thread& thread : threads) thread.join();
  EXPECT_FALSE(failed);
  const CacheStats stats = f.cache->Stats();
  EXPECT_EQ(stats.hits + stats.misses, reads.load());
  EXPECT_GT(stats.hits, 0u);
  EXPECT_GT(stats.evicted_chunks, 0u);
}

TEST(LocalFileCacheTest, EveryAccessFeedsTheWorkingSetEstimate) {
  Fixture f("wss.cache", 4);
  for (uint64_t page = 0; page < 500; ++page) f.Read(page);          // misses count too
  for (uint64_t page = 400; page < 600; ++page) f.Write(page % 16);  // and writes
  f.clock.Advance(absl::Minutes(2));
  for (uint64_t page = 1'000; page < 1'300; ++page) f.Read(page);
  const std::vector<double> windows = f.cache->WorkingSetWindows();
  ASSERT_EQ(windows.size(), 60u);
  EXPECT_NEAR(windows[0], 300, 15);  // the last minute: the last 300 pages
  EXPECT_NEAR(windows[1], 300, 15);
  EXPECT_NEAR(windows[2], 800, 40);  // three minutes: all of them
  EXPECT_NEAR(windows[59], 800, 40);
  const WorkingSetEstimator snapshot = f.cache->WorkingSet();
  EXPECT_EQ(*snapshot.Estimate(absl::Minutes(3), f.clock.Now()), windows[2]);
}

TEST(LocalFileCacheTest, WrongBufferSizeIsAnError) {
  Fixture f("buffers.cache", 1);
  std::vector<std::byte> small(100);
  absl::StatusOr<bool> read = f.cache->Read(1, small);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(read.status().message().find("buffer of 100 bytes"), std::string::npos)
      << read.status();
  EXPECT_EQ(f.cache->Write(1, small).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.cache->Stats().writes, 0u);
}

TEST(LocalFileCacheTest, OpenErrorsNameThePath) {
  ManualClock clock;
  CacheOptions options;
  options.path = TempPath("no-such-dir/file.cache");
  absl::StatusOr<std::unique_ptr<LocalFileCache>> cache = LocalFileCache::Open(options, clock);
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(cache.status().message().find(options.path), std::string::npos) << cache.status();

  options.path = TempPath("bad.cache");
  options.page_size = 0;
  cache = LocalFileCache::Open(options, clock);
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
  options.page_size = 1 << 20;
  options.pages_per_chunk = 2048;  // a 2 GiB chunk
  cache = LocalFileCache::Open(options, clock);
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(cache.status().message().find("1 GiB"), std::string::npos) << cache.status();
}

}  // namespace
}  // namespace autoscale::lfc
