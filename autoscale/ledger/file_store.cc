#include "autoscale/ledger/file_store.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/crc32c.h"
#include "autoscale/ledger/internal/log_format.h"
#include "glog/logging.h"

namespace autoscale::ledger {

using internal::kReserveName;

std::string FileStore::LogName(uint64_t first_seq) { return internal::LogName(first_seq); }

std::string FileStore::SnapshotName(uint64_t seq) { return internal::SnapshotName(seq); }

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(FileStoreOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("ledger store: no directory given");
  FileSystem& fs = options.fs != nullptr ? *options.fs : FileSystem::Default();
  RETURN_IF_ERROR(Annotate(fs.CreateDir(options.dir), "ledger directory"));
  absl::StatusOr<std::unique_ptr<FileLock>> lock = fs.Lock(options.dir + "/" + internal::kLockName);
  if (absl::IsFailedPrecondition(lock.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("ledger directory ", options.dir, " is in use by another process"));
  }
  if (!lock.ok()) return lock.status();
  return std::unique_ptr<FileStore>(new FileStore(std::move(options), fs, *std::move(lock)));
}

FileStore::FileStore(FileStoreOptions options, FileSystem& fs, std::unique_ptr<FileLock> lock)
    : options_(std::move(options)), fs_(fs), lock_(std::move(lock)), backoff_(options_.retry_min) {}

FileStore::~FileStore() {
  if (writer_.joinable()) {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
      work_cv_.Signal();
    }
    writer_.join();
    {
      absl::MutexLock l(&mu_);
      writer_done_ = true;
      notify_cv_.Signal();
    }
    notifier_.join();
  }
}

absl::StatusOr<StoredState> FileStore::Recover() {
  CHECK(!recovered_) << "FileStore::Recover called twice";
  const std::string& dir = options_.dir;
  ASSIGN_OR_RETURN(internal::LedgerFiles files, internal::ListLedgerFiles(fs_, dir));
  for (const std::string& tmp : files.temporary) {
    LOG(WARNING) << "ledger: removing " << tmp << ", left over from an interrupted snapshot";
    (void)fs_.Remove(tmp);
  }

  StoredState state;
  if (!files.note.empty()) {
    // An operator cut the log since the last start (ledgerctl truncate): say so once.
    TruncationNote note;
    absl::StatusOr<std::string> text = fs_.ReadFile(files.note);
    if (text.ok() && note.ParseFromString(*text)) {
      state.info.truncated_file = note.file();
      state.info.truncated_offset = note.offset();
      state.info.truncated_bytes = note.bytes();
      state.info.truncation_reason = note.reason();
      LOG(WARNING) << "ledger log " << note.file() << ": " << note.reason();
    }
    (void)fs_.Remove(files.note);
  }

  uint64_t base = 0;
  if (!files.snapshots.empty()) {
    const auto& [seq, path] = *files.snapshots.rbegin();
    ASSIGN_OR_RETURN(std::string data, fs_.ReadFile(path));
    ASSIGN_OR_RETURN(LedgerSnapshot snap, internal::DecodeSnapshot(data, path));
    if (snap.seq() != seq) {
      return absl::DataLossError(absl::StrCat("ledger snapshot ", path, ": holds record ",
                                              snap.seq(), " but its name says ", seq));
    }
    base = seq;
    state.snapshot = std::move(snap);
    state.info.snapshot_file = path;
    for (const auto& [older, older_path] : files.snapshots) {
      if (older < seq) (void)fs_.Remove(older_path);
    }
  }
  std::vector<std::pair<uint64_t, std::string>> live;
  for (const auto& [start, path] : files.logs) {
    if (start <= base) {
      (void)fs_.Remove(path);  // wholly covered by the snapshot
    } else {
      live.emplace_back(start, path);
    }
  }

  uint64_t expected = base + 1;
  for (size_t i = 0; i < live.size(); ++i) {
    const auto& [start, path] = live[i];
    if (start != expected) {
      return absl::DataLossError(absl::StrCat("ledger log ", path, " starts at record ", start,
                                              " but record ", expected,
                                              " comes next (a log file is missing)"));
    }
    ASSIGN_OR_RETURN(std::string data, fs_.ReadFile(path));
    internal::LogScan scan = internal::ScanLog(data, expected);
    for (LedgerRecord& r : scan.records) state.records.push_back(std::move(r));
    expected += scan.frames.size();
    if (scan.damage.empty()) continue;
    const std::string where =
        absl::StrCat("ledger log ", path, " at offset ", scan.end, ", where record ", expected,
                     " should be: ", scan.damage);
    const std::string remedy =
        absl::StrCat(". Nothing is cut without an operator: `ledgerctl verify --data_dir=", dir,
                     "` shows the damage, `ledgerctl truncate --data_dir=", dir, " --at=", expected,
                     "` drops record ", expected, " and every later one");
    if (i + 1 != live.size()) {
      return absl::DataLossError(absl::StrCat(where, "; later log files follow (from record ",
                                              live[i + 1].first, "), so this is not a torn tail",
                                              remedy));
    }
    if (scan.later) {
      return absl::DataLossError(absl::StrCat(
          where, "; a valid record ", scan.later->seq, " follows at offset ", scan.later->offset,
          ", so this is not a torn tail: cutting here would lose records ", expected, " to ",
          scan.later->seq, " at least", remedy));
    }
    // A torn tail: the process died in mid-write, and no record after it was ever acknowledged.
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs_.OpenForAppend(path, false));
    RETURN_IF_ERROR(f->Truncate(scan.end));
    RETURN_IF_ERROR(f->Sync());
    state.info.truncated_file = path;
    state.info.truncated_offset = scan.end;
    state.info.truncated_bytes = data.size() - scan.end;
    state.info.truncation_reason = absl::StrCat("torn tail: ", scan.damage);
    LOG(ERROR) << "ledger log " << path << ": " << scan.damage << " at offset " << scan.end
               << " and no valid record after it (a torn tail); cut " << data.size() - scan.end
               << " bytes there";
  }
  state.last_seq = expected - 1;
  state.info.records_replayed = state.records.size();

  // What was read is served as durable, so it must be: a process that died before its
  // fdatasync may have left records that only the page cache holds.
  for (size_t i = 0; i < live.size(); ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs_.OpenForAppend(live[i].second, false));
    if (options_.sync) RETURN_IF_ERROR(f->Sync());
    if (i + 1 == live.size()) {
      log_ = std::move(f);
      log_durable_size_ = log_->Size();
    }
  }
  if (options_.sync) RETURN_IF_ERROR(fs_.SyncDir(dir));
  {
    absl::MutexLock l(&mu_);
    last_seq_ = state.last_seq;
    snapshot_seq_ = base;
    if (live.empty()) {
      // The writer creates the first file (a full disk then fails a write, not the start).
      pending_.push_back({.start = expected});
    } else {
      log_start_ = live.back().first;
    }
  }
  durable_seq_.store(state.last_seq);
  if (options_.reserve_bytes > 0) TryReserve();
  recovered_ = true;
  writer_ = std::thread(&FileStore::WriterLoop, this);
  notifier_ = std::thread(&FileStore::NotifierLoop, this);
  return state;
}

absl::Status FileStore::Writable(bool growth) const {
  const int health = health_.load(std::memory_order_acquire);
  if (health == kHealthy || (health == kLowSpace && !growth)) return absl::OkStatus();
  absl::MutexLock l(&mu_);
  if (!error_.ok()) return error_;
  return absl::UnavailableError(absl::StrCat(
      "the ledger's disk (", options_.dir,
      ") is full: its reserve is in use, so only changes that give capacity back are taken "
      "(decreases, releases, migration results) until it has room again"));
}

void FileStore::SetHealth() {
  health_.store(!error_.ok() ? kFailed
                : low_space_ ? kLowSpace
                             : kHealthy,
                std::memory_order_release);
}

bool FileStore::TryReserve() {
  const std::string path = Path(kReserveName);
  absl::StatusOr<uint64_t> have = fs_.AllocatedBytes(path);
  bool held = have.ok() && *have >= options_.reserve_bytes;
  if (!held) {
    // Twice the reserve free, so that taking it back does not fill the disk again at once.
    absl::StatusOr<uint64_t> free = fs_.FreeBytes(options_.dir);
    held = free.ok() && *free >= 2 * options_.reserve_bytes &&
           fs_.Allocate(path, options_.reserve_bytes).ok();
  }
  reserve_held_ = held;
  absl::MutexLock l(&mu_);
  if (held && low_space_) {
    LOG(WARNING) << "ledger: the disk of " << options_.dir
                 << " has room again; reserve allocated, growth is granted again";
  } else if (!held && !low_space_) {
    LOG(ERROR) << "ledger: no room for the reserve of " << options_.reserve_bytes << " bytes in "
               << options_.dir << "; only changes that give capacity back are taken until there is";
  }
  low_space_ = !held;
  if (!held) next_reserve_try_ = absl::Now() + options_.retry_max;
  SetHealth();
  return held;
}

uint64_t FileStore::Append(const LedgerRecord& record) {
  CHECK(recovered_) << "FileStore::Append before Recover";
  std::string payload;
  record.SerializeToString(&payload);
  CHECK_LE(payload.size(), kMaxRecordBytes) << "the ledger checks a record's size before it";
  const uint32_t payload_crc = internal::Crc32c(payload.data(), payload.size());
  absl::MutexLock l(&mu_);
  const uint64_t seq = ++last_seq_;
  if (pending_.empty()) pending_.emplace_back();
  Chunk& c = pending_.back();
  internal::AppendFrame(c.bytes, seq, payload, payload_crc);
  c.last_seq = seq;
  ++appended_;
  work_cv_.Signal();
  return seq;
}

void FileStore::WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) {
  if (seq <= durable_seq_.load(std::memory_order_acquire)) {
    done(absl::OkStatus());
    return;
  }
  absl::Status status;
  {
    absl::MutexLock l(&mu_);
    const bool durable = seq <= durable_seq_.load(std::memory_order_relaxed);
    if (error_.ok() && !durable) {
      waiters_.emplace_back(seq, std::move(done));
      return;
    }
    if (!durable) status = error_;
  }
  done(status);
}

void FileStore::MarkDurable(uint64_t seq) {
  if (seq > durable_seq_.load(std::memory_order_relaxed)) {
    durable_seq_.store(seq, std::memory_order_release);
  }
  auto keep = std::partition(waiters_.begin(), waiters_.end(),
                             [&](const auto& w) { return w.first > seq; });
  for (auto it = keep; it != waiters_.end(); ++it) {
    to_notify_.emplace_back(std::move(it->second), absl::OkStatus());
  }
  waiters_.erase(keep, waiters_.end());
  if (!to_notify_.empty()) notify_cv_.Signal();
}

absl::Status FileStore::OpenLog(uint64_t first_seq) {
  // Nothing in a file whose start is still queued was ever durable: start it empty.
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f,
                   fs_.OpenForAppend(Path(LogName(first_seq)), /*truncate=*/true));
  RETURN_IF_ERROR(fs_.SyncDir(options_.dir));
  log_ = std::move(f);
  log_durable_size_ = 0;
  log_dirty_ = false;
  absl::MutexLock l(&mu_);
  log_start_ = first_seq;
  return absl::OkStatus();
}

absl::Status FileStore::Flush() {
  uint64_t syncs = 0;
  absl::Cleanup count = [&] {
    absl::MutexLock l(&mu_);
    fsyncs_ += syncs;
  };
  if (log_ != nullptr && log_dirty_) {
    // Never write behind a record that was not written whole (or whose sync failed).
    RETURN_IF_ERROR(log_->Truncate(log_durable_size_));
    log_dirty_ = false;
  }
  while (!queue_.empty()) {
    if (queue_.front().start != 0) {
      RETURN_IF_ERROR(OpenLog(queue_.front().start));
      queue_.front().start = 0;
    }
    // One file's run: the chunks up to the next cut.
    size_t n = 0;
    uint64_t last = 0;
    for (; n < queue_.size() && (n == 0 || queue_[n].start == 0); ++n) {
      const Chunk& c = queue_[n];
      if (!c.bytes.empty()) {
        log_dirty_ = true;
        RETURN_IF_ERROR(log_->Append(c.bytes));
      }
      last = std::max(last, c.last_seq);
    }
    if (log_dirty_) {
      if (options_.sync) {
        RETURN_IF_ERROR(log_->Sync());
        ++syncs;
      }
      log_durable_size_ = log_->Size();
      log_dirty_ = false;
    }
    queue_.erase(queue_.begin(), queue_.begin() + n);
    if (last > 0) {
      absl::MutexLock l(&mu_);
      MarkDurable(last);
    }
  }
  return absl::OkStatus();
}

void FileStore::Flushed(absl::Status s) {
  if (absl::IsResourceExhausted(s) && reserve_held_) {
    const absl::Status freed = fs_.Remove(Path(kReserveName));
    if (freed.ok() || absl::IsNotFound(freed)) {
      reserve_held_ = false;
      LOG(ERROR) << "ledger: the disk of " << options_.dir << " is full (" << s.message()
                 << "); freed the reserve of " << options_.reserve_bytes
                 << " bytes to write on; until there is room again only changes that give "
                    "capacity back are taken";
      {
        absl::MutexLock l(&mu_);
        low_space_ = true;
        next_reserve_try_ = absl::Now() + options_.retry_max;
        SetHealth();
      }
      s = Flush();
    }
  }
  absl::MutexLock l(&mu_);
  if (s.ok()) {
    if (!error_.ok()) LOG(WARNING) << "ledger log in " << options_.dir << " is written again";
    error_ = absl::OkStatus();
    backoff_ = options_.retry_min;
  } else {
    ++write_errors_;
    if (error_.ok()) {
      LOG(ERROR) << "ledger log in " << options_.dir << ": " << s
                 << "; changes are refused until a retry succeeds";
    }
    error_ = absl::UnavailableError(absl::StrCat("the ledger log in ", options_.dir,
                                                 " cannot be written (", s.message(),
                                                 "); changes are refused until it can (retrying)"));
    next_retry_ = absl::Now() + backoff_;
    backoff_ = std::min(backoff_ * 2, options_.retry_max);
    // Waiters of records not yet durable learn it now; the records stay queued.
    for (auto& [seq, done] : waiters_) to_notify_.emplace_back(std::move(done), error_);
    waiters_.clear();
    if (!to_notify_.empty()) notify_cv_.Signal();
  }
  SetHealth();
}

void FileStore::WriterLoop() {
  for (;;) {
    bool stop = false, reserve_due = false, retry = false;
    {
      absl::MutexLock l(&mu_);
      for (;;) {
        const absl::Time now = absl::Now();
        const bool failed = !error_.ok();
        const bool probe = !failed && low_space_ && options_.reserve_bytes > 0;
        if (stopping_ || (!failed && !pending_.empty()) || (failed && now >= next_retry_) ||
            (probe && now >= next_reserve_try_)) {
          reserve_due = probe && now >= next_reserve_try_;
          break;
        }
        work_cv_.WaitWithDeadline(&mu_, failed  ? next_retry_
                                        : probe ? next_reserve_try_
                                                : absl::InfiniteFuture());
      }
      stop = stopping_;
      if (stop && !error_.ok()) {
        flushed_cv_.SignalAll();
        return;
      }
      retry = !error_.ok();
      for (Chunk& c : pending_) queue_.push_back(std::move(c));
      pending_.clear();
    }
    if (reserve_due) TryReserve();
    if (!queue_.empty() || retry) Flushed(Flush());
    {
      absl::MutexLock l(&mu_);
      flushed_cv_.SignalAll();
    }
    if (stop) return;
  }
}

void FileStore::NotifierLoop() {
  for (;;) {
    std::vector<std::pair<std::function<void(absl::Status)>, absl::Status>> batch;
    {
      absl::MutexLock l(&mu_);
      while (to_notify_.empty() && !writer_done_) notify_cv_.Wait(&mu_);
      if (to_notify_.empty()) return;
      batch.swap(to_notify_);
    }
    for (auto& [done, status] : batch) done(status);
  }
}

uint64_t FileStore::Cut() {
  absl::MutexLock l(&mu_);
  pending_.push_back({.start = last_seq_ + 1});
  work_cv_.Signal();
  return last_seq_;
}

absl::Status FileStore::WriteSnapshot(const LedgerSnapshot& snapshot) {
  const uint64_t seq = snapshot.seq();
  const std::string path = Path(SnapshotName(seq));
  const std::string tmp = path + ".tmp";
  absl::Status s = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs_.OpenForAppend(tmp, /*truncate=*/true));
    RETURN_IF_ERROR(f->Append(internal::EncodeSnapshot(snapshot)));
    RETURN_IF_ERROR(f->Sync());
    f.reset();
    RETURN_IF_ERROR(fs_.Rename(tmp, path));
    return fs_.SyncDir(options_.dir);
  }();
  if (!s.ok()) {
    (void)fs_.Remove(tmp);
    return Annotate(s, absl::StrCat("ledger snapshot ", path));
  }
  {
    // The writer must have moved past the cut before the old log file goes.
    absl::MutexLock l(&mu_);
    while (log_start_ <= seq && error_.ok() && !stopping_) flushed_cv_.Wait(&mu_);
    if (!error_.ok()) return error_;
    if (log_start_ <= seq) return absl::CancelledError("ledger store is stopping");
    snapshot_seq_ = std::max(snapshot_seq_, seq);
  }
  int removed = 0;
  absl::StatusOr<internal::LedgerFiles> files = internal::ListLedgerFiles(fs_, options_.dir);
  if (files.ok()) {
    for (const auto& [n, p] : files->snapshots) {
      if (n < seq && fs_.Remove(p).ok()) ++removed;
    }
    for (const auto& [n, p] : files->logs) {
      if (n <= seq && fs_.Remove(p).ok()) ++removed;
    }
  }
  LOG(INFO) << "ledger snapshot " << path << " (records up to " << seq << "); removed " << removed
            << " older files";
  return absl::OkStatus();
}

StoreStats FileStore::Stats() const {
  absl::MutexLock l(&mu_);
  return {.records_appended = appended_,
          .records_since_snapshot = last_seq_ - snapshot_seq_,
          .fsyncs = fsyncs_,
          .durable_seq = durable_seq_.load(),
          .error = error_,
          .low_space = low_space_,
          .write_errors = write_errors_};
}

}  // namespace autoscale::ledger
