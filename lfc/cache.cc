#include "lfc/cache.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cerrno>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::lfc {
namespace {

// pread/pwrite until done: they may transfer less than asked or be interrupted. The message is
// built only on failure, to keep it off the hit path.
template <typename Buffer, typename Io>
absl::Status FullIo(Io io, int fd, Buffer* data, size_t size, uint64_t offset, uint64_t page,
                    const std::string& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = io(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      return absl::ErrnoToStatus(
          error, absl::StrCat("lfc ", std::is_const_v<Buffer> ? "write" : "read", " of page ", page,
                              " at offset ", offset + done, " of ", path,
                              n == 0 ? ": unexpected end of file" : ""));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalFileCache>> LocalFileCache::Open(CacheOptions options,
                                                                     Clock& clock) {
  if (options.page_size == 0 || options.pages_per_chunk == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lfc open ", options.path, ": page_size and pages_per_chunk must be > 0, got ",
                     options.page_size, " and ", options.pages_per_chunk));
  }
  if (uint64_t{options.page_size} * options.pages_per_chunk > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lfc open ", options.path, ": a chunk must be at most 1 GiB, got ",
                     options.page_size, " x ", options.pages_per_chunk, " bytes"));
  }
  const int fd = open(options.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("lfc open ", options.path));
  const uint64_t size_bytes = options.size_bytes;
  std::unique_ptr<LocalFileCache> cache(new LocalFileCache(std::move(options), clock, fd));
  cache->Resize(size_bytes);
  return cache;
}

LocalFileCache::LocalFileCache(CacheOptions options, Clock& clock, int fd)
    : options_(std::move(options)), clock_(clock), fd_(fd), estimator_(options_.estimator) {}

LocalFileCache::~LocalFileCache() { close(fd_); }

uint64_t LocalFileCache::PageOffset(const Chunk& chunk, uint64_t page) const {
  return chunk.slot * chunk_bytes() + (page % options_.pages_per_chunk) * options_.page_size;
}

absl::StatusOr<bool> LocalFileCache::Read(uint64_t page, std::span<std::byte> out) {
  if (out.size() != options_.page_size) {
    return absl::InvalidArgumentError(absl::StrCat("lfc read of page ", page, " from ",
                                                   options_.path, ": buffer of ", out.size(),
                                                   " bytes, pages are ", options_.page_size));
  }
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  estimator_.Add(page, now);
  const auto it = chunks_.find(page / options_.pages_per_chunk);
  if (it == chunks_.end() || !it->second->present[page % options_.pages_per_chunk]) {
    ++stats_.misses;
    return false;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, it->second);
  const Chunk& chunk = *it->second;
  absl::Status status =
      FullIo(pread, fd_, out.data(), out.size(), PageOffset(chunk, page), page, options_.path);
  if (!status.ok()) return status;
  return true;
}

absl::Status LocalFileCache::Write(uint64_t page, std::span<const std::byte> data) {
  if (data.size() != options_.page_size) {
    return absl::InvalidArgumentError(absl::StrCat("lfc write of page ", page, " to ",
                                                   options_.path, ": buffer of ", data.size(),
                                                   " bytes, pages are ", options_.page_size));
  }
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  estimator_.Add(page, now);
  if (size_chunks_ == 0) return absl::OkStatus();
  const uint64_t key = page / options_.pages_per_chunk;
  auto it = chunks_.find(key);
  if (it == chunks_.end()) {
    uint64_t slot;
    if (lru_.size() >= size_chunks_) {
      slot = EvictLru();  // its stale bytes are overwritten or never read (present is false)
    } else if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = slot_count_++;
    }
    lru_.push_front(Chunk{key, slot, std::vector<bool>(options_.pages_per_chunk)});
    it = chunks_.emplace(key, lru_.begin()).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  Chunk& chunk = *it->second;
  const size_t index = page % options_.pages_per_chunk;
  // Not cached while the bytes are in flux, so a failed write leaves no torn page behind.
  chunk.present[index] = false;
  RETURN_IF_ERROR(
      FullIo(pwrite, fd_, data.data(), data.size(), PageOffset(chunk, page), page, options_.path));
  chunk.present[index] = true;
  ++stats_.writes;
  return absl::OkStatus();
}

uint64_t LocalFileCache::EvictLru() {
  const Chunk& victim = lru_.back();
  const uint64_t slot = victim.slot;
  chunks_.erase(victim.key);
  lru_.pop_back();
  ++stats_.evicted_chunks;
  return slot;
}

void LocalFileCache::Resize(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  size_chunks_ = bytes / chunk_bytes();
  while (lru_.size() > size_chunks_) {
    const uint64_t slot = EvictLru();
    // Give the disk space back; the slot is reused first when the cache grows again.
    if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(slot * chunk_bytes()),
                  static_cast<off_t>(chunk_bytes())) != 0) {
      LOG_FIRST_N(WARNING, 1) << "lfc resize of " << options_.path
                              << ": cannot punch holes, disk space is not returned: "
                              << strerror(errno);
    }
    free_slots_.push_back(slot);
  }
}

CacheStats LocalFileCache::Stats() const {
  absl::MutexLock lock(&mu_);
  CacheStats stats = stats_;
  stats.used_chunks = lru_.size();
  stats.size_chunks = size_chunks_;
  return stats;
}

WorkingSetEstimator LocalFileCache::WorkingSet() const {
  absl::MutexLock lock(&mu_);
  return estimator_;
}

std::vector<double> LocalFileCache::WorkingSetWindows() const {
  return WorkingSet().MinuteWindows(clock_.Now());
}

absl::Status CacheResizer::SetSizeBytes(uint64_t bytes) {
  cache_.Resize(bytes);
  return absl::OkStatus();
}

}  // namespace autoscale::lfc
