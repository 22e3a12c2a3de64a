// FaultInjectionFileSystem (testonly): a FileSystem in memory that remembers what was synced, so
// that a test can crash the machine under a FileStore at any point and see what a real disk
// could hold afterwards (the idea of LevelDB's fault_injection_test, with directories modelled
// too).
//
// Every file has its bytes as written and its bytes as of its last Sync (fdatasync); every
// directory has its entries as they are and as of its last SyncDir. A simulated power loss
// throws away whatever was not synced: file bytes written after the last Sync, and every entry
// created, renamed or removed since the last SyncDir (a new file whose directory was not synced
// is gone, a renamed one is back under its old name, a removed one is back). A torn power loss
// keeps a random prefix of each file's unsynced bytes instead, as a disk that wrote part of a
// request does. A process crash (kill -9) loses nothing: the page cache survives; but what it
// holds is still not synced, so a power loss after the restart can lose it unless recovery
// synced it.
//
// Crash points: CrashAt(n) makes the n-th mutating operation from now (open, append, sync,
// truncate, rename, remove, directory sync, allocation) and every later one fail (an append
// first writes a random part of its bytes), as if the process had died there; Restart then
// brings the file system back as the kind of crash leaves it. Capacity and injected errors
// simulate full disks and I/O errors.
//
//   FaultInjectionFileSystem fs(/*seed=*/1);
//   auto store = FileStore::Open({.dir = "/d", .fs = &fs});
//   fs.CrashAt(fs.operations() + 17);
//   ... run until operations fail; destroy the store ...
//   fs.Restart(FaultInjectionFileSystem::Crash::kPowerLoss);
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/ledger/file_system.h"

namespace autoscale::ledger {

class FaultInjectionFileSystem final : public FileSystem {
 public:
  enum class Crash {
    // The process died: nothing is lost (the page cache survives), nothing becomes synced.
    kProcess,
    // The machine lost power: everything not synced is lost.
    kPowerLoss,
    // The same, but each file keeps a random prefix of what was written after its last sync.
    kTornPowerLoss,
  };
  enum class Op { kOpen, kAppend, kSync, kTruncate, kRename, kRemove, kSyncDir, kAllocate };

  explicit FaultInjectionFileSystem(uint64_t seed = 0);
  ~FaultInjectionFileSystem() override;

  // Mutating operations so far.
  uint64_t operations() const;
  // The operation numbered `n` (operations() + 1 is the next one) and all later ones fail:
  // the process is dead from there on. 0: no crash.
  void CrashAt(uint64_t n);
  bool crashed() const;
  // Brings the file system back after a crash (or at any time, as if it had crashed then).
  void Restart(Crash kind);
  // Total bytes the files may hold (data or allocation); an append beyond it writes what fits
  // and fails with RESOURCE_EXHAUSTED.
  void SetCapacity(uint64_t bytes);
  // Called before every mutating operation; an error it returns is the operation's (nothing
  // happens). Null: none.
  void SetFault(std::function<absl::Status(Op op, const std::string& path)> fault);

  // The bytes of a file as they are now (not what is synced); nullopt if it does not exist.
  std::optional<std::string> Contents(const std::string& path) const;
  // Replaces a file's bytes, synced (a test's corruption of what is on disk).
  void SetContents(const std::string& path, const std::string& data);

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                              bool truncate) override;
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Allocate(const std::string& path, uint64_t bytes) override;
  absl::StatusOr<uint64_t> AllocatedBytes(const std::string& path) override;
  absl::StatusOr<uint64_t> FreeBytes(const std::string& dir) override;
  absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) override;

 private:
  struct Inode {
    std::string data;
    std::string synced;
    uint64_t allocated = 0;
  };
  struct Dir {
    std::map<std::string, std::shared_ptr<Inode>> now;
    std::map<std::string, std::shared_ptr<Inode>> synced;
  };
  class File;
  class HeldLock;

  // Counts a mutating operation: an error if the process is dead (or dies now), or the fault's.
  absl::Status Begin(Op op, const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Alive() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t Used() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The directory of `path` and the name in it; null if the directory does not exist.
  Dir* DirOf(const std::string& path, std::string* name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const Dir* DirOf(const std::string& path, std::string* name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The file's append (File::Append), under the lock.
  absl::Status Append(Inode& inode, std::string_view data, const std::string& path);

  mutable absl::Mutex mu_;
  std::map<std::string, Dir> dirs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> locked_ ABSL_GUARDED_BY(mu_);
  uint64_t operations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t crash_at_ ABSL_GUARDED_BY(mu_) = 0;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t capacity_ ABSL_GUARDED_BY(mu_) = UINT64_MAX / 2;
  std::function<absl::Status(Op, const std::string&)> fault_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace autoscale::ledger
