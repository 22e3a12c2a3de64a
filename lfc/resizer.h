// The one operation the in-VM monitor needs from a Local File Cache: set its size.
//
// The monitor shrinks the cache before it approves a downscale and grows it after an upscale,
// using `CacheSizeBytes` (sizing.h) for the new size. Implementations:
//   NoopResizer       does nothing (the monitor's default when no cache is managed);
//   CallbackResizer   calls a function (embedders with their own cache);
//   CacheResizer      resizes this library's LocalFileCache (cache.h);
//   PostgresResizer   ALTER SYSTEM + pg_reload_conf() on a PostgreSQL server (postgres_resizer.h).
//
//   std::unique_ptr<autoscale::lfc::LfcResizer> resizer = std::make_unique<NoopResizer>();
//   absl::Status s = resizer->SetSizeBytes(autoscale::lfc::CacheSizeBytes(new_memory, config));
//   if (!s.ok()) LOG(WARNING) << s;  // e.g. "lfc postgres resize to 512 MiB on ...: ..."
//
// This header does not pull in libpq.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include "absl/status/status.h"

namespace autoscale::lfc {

// Sets the size of a cache. The implementations here may be called from any thread.
class LfcResizer {
 public:
  virtual ~LfcResizer() = default;

  // Makes the cache at most `bytes` large, at once (a shrink drops cached pages; nothing needs to
  // be written back). Implementations whose unit is coarser round down (Postgres: whole MiB). On
  // error the message says what was being resized and why it failed; the cache may have kept its
  // old size, so a caller that must know calls again.
  virtual absl::Status SetSizeBytes(uint64_t bytes) = 0;
};

// Accepts every size and does nothing.
class NoopResizer final : public LfcResizer {
 public:
  absl::Status SetSizeBytes(uint64_t) override { return absl::OkStatus(); }
};

// Forwards every call to a function, and returns what it returns.
//
//   CallbackResizer resizer([&](uint64_t bytes) { return my_cache.SetLimit(bytes); });
class CallbackResizer final : public LfcResizer {
 public:
  using Callback = std::function<absl::Status(uint64_t bytes)>;
  // `callback` must not be empty.
  explicit CallbackResizer(Callback callback);

  absl::Status SetSizeBytes(uint64_t bytes) override { return callback_(bytes); }

 private:
  Callback callback_;
};

}  // namespace autoscale::lfc
