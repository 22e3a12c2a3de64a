// FileStore: the ledger's durable log in a directory of files.
//
//   log-<first seq>.wal       records, each framed as [u32 length][u32 CRC-32C][u64 seq][bytes]
//                             (little-endian; the CRC covers the bytes, then the seq)
//   snapshot-<seq>.pb         the whole ledger after record <seq>: "ASLEDGR1" [u64 length]
//                             [u32 CRC-32C][bytes], written to a .tmp file, fsync'ed, renamed
//   LOCK                      flock'ed while a process has the directory open
//
// Appends go to an in-memory batch; one writer thread writes each batch and fdatasync's it, and a
// notifier thread calls the waiters of every record in it while the writer syncs the next batch:
// concurrent requests share one fsync (group commit).
// A snapshot starts a new log file, and the files it covers are deleted once it is durable.
//
// Recovery reads the newest snapshot (an unreadable one is an error naming the file, never an
// empty ledger) and the log files after it. A torn or corrupt tail of the last log file (a crash
// in mid-write, or bad bytes) is cut at the last good record and reported in RecoveryInfo and the
// log; damage anywhere else is an error, since records after it would be lost.
//
//   ASSIGN_OR_RETURN(auto store, FileStore::Open({.dir = "/var/lib/scheduler"}));
//   ASSIGN_OR_RETURN(auto ledger, Ledger::Open(options, std::move(store)));
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger {

struct FileStoreOptions {
  std::string dir{};
  // fdatasync each batch before calling it durable. Off only to measure everything else.
  bool sync = true;
};

class FileStore : public LedgerStore {
 public:
  // Creates `dir` if needed and locks it. Fails if another process holds it.
  static absl::StatusOr<std::unique_ptr<FileStore>> Open(FileStoreOptions options);
  // Writes and syncs what was appended, then stops the writer.
  ~FileStore() override;

  absl::StatusOr<StoredState> Recover() override;
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

  FileStore(FileStoreOptions options, int lock_fd);
  void WriterLoop();
  void NotifierLoop();
  absl::Status OpenLog(uint64_t first_seq);

  const FileStoreOptions options_;
  const int lock_fd_;
  bool recovered_ = false;

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;     // pending_ has work, or stopping_
  absl::CondVar flushed_cv_;  // a batch was written
  absl::CondVar notify_cv_;   // to_notify_ has callbacks, or writer_done_
  std::vector<Chunk> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, std::function<void(absl::Status)>>> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snapshot_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t fsyncs_ ABSL_GUARDED_BY(mu_) = 0;
  // First seq of the log file the writer writes to.
  uint64_t log_start_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  // Waiters whose records are durable (or failed), for the notifier to call.
  std::vector<std::pair<std::function<void(absl::Status)>, absl::Status>> to_notify_
      ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> durable_seq_{0};

  // Only the writer thread touches the open log file (after Recover).
  int log_fd_ = -1;
  std::thread writer_;
  std::thread notifier_;
};

}  // namespace autoscale::ledger
