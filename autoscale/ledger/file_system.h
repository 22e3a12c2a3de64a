// FileSystem: the file operations the ledger's FileStore and ledgerctl use, behind a seam (as
// LevelDB's Env), so that a test can put a file layer under the store that remembers what was
// synced and loses the rest at a simulated crash (fault_injection_file_system.h).
//
// The operations are the few a write-ahead log needs, with POSIX meaning:
//   - a file opened for appending, written at its end, fdatasync'ed (Sync), cut back (Truncate);
//   - whole-file reads, directory listings, renames, removals;
//   - SyncDir: makes the directory's entries (created, renamed and removed files) durable;
//   - Allocate: a file of a given size whose blocks are reserved (fallocate), so that writing
//     elsewhere fails with RESOURCE_EXHAUSTED before the space it holds is gone;
//   - Lock: an exclusive lock on a file (flock), held while the returned object lives.
// Errors name the operation and the path. A full disk is RESOURCE_EXHAUSTED (ENOSPC, EDQUOT);
// other failures are UNAVAILABLE or NOT_FOUND.
//
//   FileSystem& fs = FileSystem::Default();
//   ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs.OpenForAppend(dir + "/log", false));
//   RETURN_IF_ERROR(f->Append(bytes));
//   RETURN_IF_ERROR(f->Sync());
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace autoscale::ledger {

// A file open for writing at its end.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes `data` at the end. On an error part of it may have been written.
  virtual absl::Status Append(std::string_view data) = 0;
  // Makes what was written durable (fdatasync).
  virtual absl::Status Sync() = 0;
  // Cuts the file to `size` bytes; later appends go there.
  virtual absl::Status Truncate(uint64_t size) = 0;
  // Bytes in the file (as written, durable or not).
  virtual uint64_t Size() const = 0;
};

// Held while a directory is in use; released when destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The real file system (POSIX calls).
  static FileSystem& Default();

  // Opens `path` for appending, creating it if missing; `truncate` empties it first.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                                      bool truncate) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // The names (not paths) in `dir`, in no particular order.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // Creates `dir` and its parents if missing.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // NOT_FOUND if `path` does not exist.
  virtual absl::Status Remove(const std::string& path) = 0;
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Creates `path` (if missing) with `bytes` bytes allocated, and syncs it.
  virtual absl::Status Allocate(const std::string& path, uint64_t bytes) = 0;
  // Bytes allocated to `path` (0 if it does not exist).
  virtual absl::StatusOr<uint64_t> AllocatedBytes(const std::string& path) = 0;
  // Bytes free for this process on the file system of `dir`.
  virtual absl::StatusOr<uint64_t> FreeBytes(const std::string& dir) = 0;
  // FAILED_PRECONDITION if another holder has it.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) = 0;
};

}  // namespace autoscale::ledger
