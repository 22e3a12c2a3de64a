// A disk-backed Local File Cache (LFC): what an embedding storage layer puts in front of its
// remote storage. Fixed-size pages are grouped in chunks (page / pages_per_chunk); a chunk owns
// one slot of the cache file, and whole chunks are evicted in LRU order. Resizing takes effect at
// once: a shrink drops least recently used chunks and punches holes in the file where they were
// (nothing is written back: the remote storage holds every page); a grow just allows more chunks.
// Every read and write also feeds a WorkingSetEstimator, whose windows the monitor exports.
//
//   ASSIGN_OR_RETURN(auto cache, LocalFileCache::Open({.path = "/var/lfc/file.cache",
//                                                      .size_bytes = 512 << 20}, Clock::Real()));
//   std::vector<std::byte> buf(cache->page_size());
//   ASSIGN_OR_RETURN(bool hit, cache->Read(page, buf));
//   if (!hit) {
//     RETURN_IF_ERROR(remote.Fetch(page, buf));
//     RETURN_IF_ERROR(cache->Write(page, buf));
//   }
//   CacheResizer resizer(*cache);  // a LfcResizer for the monitor (resizer.h)
//
// Thread-safe. File I/O runs under the cache's lock, which keeps every page read consistent with
// concurrent writes, evictions and resizes; this suits a cache file that stays in the page cache,
// as the LFC's does (its size is tied to the VM's memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/clock.h"
#include "lfc/resizer.h"
#include "lfc/working_set_estimator.h"

namespace autoscale::lfc {

struct CacheOptions {
  // The cache file. Created if missing and emptied: the cache starts cold.
  std::string path;
  // Initial size, rounded down to whole chunks. 0 turns the cache off until it is resized.
  uint64_t size_bytes = 0;
  // Bytes per page, and pages per chunk (Neon: 8 KiB pages, 128 per 1 MiB chunk).
  uint32_t page_size = 8192;
  uint32_t pages_per_chunk = 128;
  WorkingSetEstimator::Options estimator;
};

struct CacheStats {
  uint64_t hits = 0;            // reads that found the page
  uint64_t misses = 0;          // reads that did not
  uint64_t writes = 0;          // pages written
  uint64_t evicted_chunks = 0;  // chunks dropped to make room or by a shrink
  uint64_t used_chunks = 0;     // chunks in the cache now
  uint64_t size_chunks = 0;     // the current size in chunks
};

class LocalFileCache {
 public:
  // Opens (creates, truncates) the cache file. InvalidArgument for a bad option, the errno's code
  // for a file that cannot be opened; messages name the path.
  static absl::StatusOr<std::unique_ptr<LocalFileCache>> Open(CacheOptions options, Clock& clock);
  ~LocalFileCache();
  LocalFileCache(const LocalFileCache&) = delete;
  LocalFileCache& operator=(const LocalFileCache&) = delete;

  // Copies the page into `out` (exactly page_size() bytes) and returns true, or returns false if
  // the page is not cached (`out` is then unspecified). An error for a wrong buffer size or a
  // failed file read.
  absl::StatusOr<bool> Read(uint64_t page, std::span<std::byte> out);
  // Stores the page (exactly page_size() bytes), evicting the least recently used chunk if the
  // cache is full. Does nothing when the size is 0. An error for a wrong buffer size or a failed
  // file write; the page is then not cached.
  absl::Status Write(uint64_t page, std::span<const std::byte> data);
  // Sets the size, rounded down to whole chunks, at once.
  void Resize(uint64_t bytes);

  CacheStats Stats() const;
  // A snapshot of the working-set estimator, to query without holding up the cache.
  WorkingSetEstimator WorkingSet() const;
  // WorkingSet().MinuteWindows(clock.Now()): element i is the distinct pages read or written in
  // the last i+1 minutes.
  std::vector<double> WorkingSetWindows() const;

  uint32_t page_size() const { return options_.page_size; }
  uint64_t chunk_bytes() const { return uint64_t{options_.page_size} * options_.pages_per_chunk; }
  const std::string& path() const { return options_.path; }

 private:
  struct Chunk {
    uint64_t key;               // page / pages_per_chunk
    uint64_t slot;              // where in the file: offset slot * chunk_bytes()
    std::vector<bool> present;  // which of its pages are cached
  };

  LocalFileCache(CacheOptions options, Clock& clock, int fd);

  // Drops the least recently used chunk and returns its file slot.
  uint64_t EvictLru() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t PageOffset(const Chunk& chunk, uint64_t page) const;

  const CacheOptions options_;
  Clock& clock_;
  const int fd_;

  // Guards the chunk table, the LRU order, the file slots, the counters, the estimator, and the
  // file contents (all file I/O happens under it).
  mutable absl::Mutex mu_;
  // Most recently used first.
  std::list<Chunk> lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::list<Chunk>::iterator> chunks_ ABSL_GUARDED_BY(mu_);
  // File slots below slot_count_ that no chunk uses (holes after a shrink), reused first.
  std::vector<uint64_t> free_slots_ ABSL_GUARDED_BY(mu_);
  uint64_t slot_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t size_chunks_ ABSL_GUARDED_BY(mu_) = 0;
  CacheStats stats_ ABSL_GUARDED_BY(mu_);
  WorkingSetEstimator estimator_ ABSL_GUARDED_BY(mu_);
};

// A LfcResizer (resizer.h) for a LocalFileCache, which must outlive it. Never fails.
class CacheResizer final : public LfcResizer {
 public:
  explicit CacheResizer(LocalFileCache& cache) : cache_(cache) {}
  absl::Status SetSizeBytes(uint64_t bytes) override;

 private:
  LocalFileCache& cache_;
};

}  // namespace autoscale::lfc
