// FileStore: the ledger's durable log in a directory of files (format: internal/log_format.h).
//
// Appends go to an in-memory batch; one writer thread writes each batch and fdatasync's it, and a
// notifier thread calls the waiters of every record in it while the writer syncs the next batch:
// concurrent requests share one fsync (group commit). A snapshot starts a new log file, and the
// files it covers are deleted once it is durable. Every file operation goes through a
// FileSystem (the real one, or a test's).
//
// Recovery reads the newest snapshot (an unreadable one is an error naming the file, never an
// empty ledger) and the log files after it, then fdatasync's them all before anything is served
// (a process that died before syncing may have left records only in the page cache). A bad frame
// in the last log file is cut only when it is a torn tail: no valid frame with a later sequence
// number follows it. Otherwise bytes in the middle went bad, and the start fails with DATA_LOSS
// naming the file, the offset and the records affected: `ledgerctl verify` shows the damage and
// `ledgerctl truncate --at=SEQ` cuts there explicitly, which the next start reports. Damage in an
// earlier file is always an error.
//
// Write errors: the writer never writes behind a record it could not write whole. After an error
// it cuts the file back to what was last synced, keeps every record not yet durable, and retries
// with back-off (an fdatasync error rewrites the records, since the kernel may have dropped
// them); meanwhile waiters fail with UNAVAILABLE and Writable refuses every change. A full disk
// first uses the reserve: a file of `reserve_bytes` allocated at the start, freed the moment a
// write finds the disk full so the writer can go on. From then on the store takes only changes
// that give capacity back (the ledger refuses growth with UNAVAILABLE), so an agent's decrease is
// still recorded, and the reserve bounds what is written in that state (each VM can only shrink
// so far). When the disk has room for twice the reserve again, the reserve is allocated anew and
// growth resumes; nothing needs a restart.
//
//   ASSIGN_OR_RETURN(auto store, FileStore::Open({.dir = "/var/lib/scheduler"}));
//   ASSIGN_OR_RETURN(auto ledger, Ledger::Open(options, std::move(store)));
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/ledger/file_system.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger {

struct FileStoreOptions {
  std::string dir{};
  // fdatasync the log: each batch before calling it durable, and what recovery read. Off only to
  // measure everything else (snapshots are synced either way).
  bool sync = true;
  // Space held in reserve for a full disk (see above); 0: none, and a full disk stops writing
  // until it has room.
  uint64_t reserve_bytes = uint64_t{4} << 20;
  // After a write error the writer retries after `retry_min`, doubling up to `retry_max`; while
  // the reserve is in use it checks for room every `retry_max`.
  absl::Duration retry_min = absl::Milliseconds(100);
  absl::Duration retry_max = absl::Seconds(5);
  // Null: FileSystem::Default(). Must outlive the store.
  FileSystem* fs = nullptr;
};

class FileStore : public LedgerStore {
 public:
  // Creates `dir` if needed and locks it. Fails if another process holds it.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(FileStoreOptions options);
  // Writes and syncs what was appended (unless writing fails), then stops the writer.
  ~FileStore() override;

  absl::StatusOr<StoredState> Recover() override;
  absl::Status Writable(bool growth) const override;
  uint64_t Append(const LedgerRecord& record) override;
  void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) override;
  uint64_t Cut() override;
  absl::Status WriteSnapshot(const LedgerSnapshot& snapshot) override;
  StoreStats Stats() const override;

  // File names, for tests and tools.
  static std::string LogName(uint64_t first_seq);
  static std::string SnapshotName(uint64_t seq);

 private:
  // Bytes for one log file; `start` > 0 opens a new file whose first record is `start`.
  struct Chunk {
    uint64_t start = 0;
    std::string bytes{};
    uint64_t last_seq = 0;
  };
  enum Health { kHealthy, kLowSpace, kFailed };

  FileStore(FileStoreOptions options, FileSystem& fs, std::unique_ptr<FileLock> lock);
  void WriterLoop();
  void NotifierLoop();
  // Writes and syncs queue_ (writer thread). Stops at the first error.
  absl::Status Flush();
  absl::Status OpenLog(uint64_t first_seq);
  // What Flush's result means for the store's health (writer thread).
  void Flushed(absl::Status status);
  // Records 1..seq are durable: wakes their waiters.
  void MarkDurable(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Allocates the reserve if the disk has room for twice it (the writer, or Recover).
  bool TryReserve();
  void SetHealth() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Path(const std::string& name) const { return options_.dir + "/" + name; }

  const FileStoreOptions options_;
  FileSystem& fs_;
  const std::unique_ptr<FileLock> lock_;
  bool recovered_ = false;

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;     // pending_ has work, or stopping_
  absl::CondVar flushed_cv_;  // the writer finished a round
  absl::CondVar notify_cv_;   // to_notify_ has callbacks, or writer_done_
  std::vector<Chunk> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, std::function<void(absl::Status)>>> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snapshot_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fsyncs_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
  // First seq of the log file the writer writes to.
  uint64_t log_start_ ABSL_GUARDED_BY(mu_) = 0;
  // The error the writer is stopped at (OK: it writes).
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  // The reserve is in use (or could not be allocated).
  bool low_space_ ABSL_GUARDED_BY(mu_) = false;
  // Waiters whose records are durable (or failed), for the notifier to call.
  std::vector<std::pair<std::function<void(absl::Status)>, absl::Status>> to_notify_
      ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> durable_seq_{0};
  // A Health, read without the lock on the request path (Writable).
  std::atomic<int> health_{kHealthy};

  // The writer thread's own (Recover's before it starts).
  std::deque<Chunk> queue_;  // taken from pending_, not yet durable, in order
  std::unique_ptr<WritableFile> log_;
  uint64_t log_durable_size_ = 0;  // bytes of log_ known to be synced
  bool log_dirty_ = false;         // log_ may hold bytes after them: cut before writing
  bool reserve_held_ = false;
  absl::Duration backoff_;
  absl::Time next_retry_ = absl::InfinitePast();
  absl::Time next_reserve_try_ = absl::InfinitePast();

  std::thread writer_;
  std::thread notifier_;
};

}  // namespace autoscale::ledger
