#include "autoscale/ledger/file_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/crc32c.h"
#include "glog/logging.h"

namespace autoscale::ledger {
namespace {

namespace fs = std::filesystem;

constexpr char kSnapshotMagic[] = "ASLEDGR1";  // 8 bytes, without the NUL
constexpr size_t kSnapshotHeader = 8 + 8 + 4;
constexpr size_t kFrameHeader = 4 + 4 + 8;
constexpr uint32_t kMaxRecordBytes = 1 << 20;

void PutU32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// The CRC of a frame: over the record's bytes, then its sequence number.
uint32_t FrameCrc(uint32_t payload_crc, uint64_t seq) {
  std::string s;
  PutU64(s, seq);
  return internal::Crc32cExtend(payload_crc, s.data(), s.size());
}

absl::Status Errno(absl::string_view what, const std::string& path, int err = errno) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

absl::Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", path);
    }
    done += n;
  }
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open directory", dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : Errno("fsync directory", dir, err);
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Errno("read", path, err);
    }
    if (n == 0) break;
    data.append(buf, n);
  }
  ::close(fd);
  return data;
}

// "<prefix><20 digits><suffix>" -> the number.
bool ParseName(const std::string& name, std::string_view prefix, std::string_view suffix,
               uint64_t* seq) {
  if (name.size() != prefix.size() + 20 + suffix.size()) return false;
  if (!absl::StartsWith(name, absl::string_view(prefix.data(), prefix.size())) ||
      !absl::EndsWith(name, absl::string_view(suffix.data(), suffix.size()))) {
    return false;
  }
  return absl::SimpleAtoi(absl::string_view(name.data() + prefix.size(), 20), seq);
}

absl::StatusOr<LedgerSnapshot> ReadSnapshot(const std::string& path) {
  ASSIGN_OR_RETURN(std::string data, ReadWhole(path));
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("ledger snapshot ", path, ": ", why));
  };
  if (data.size() < kSnapshotHeader || std::memcmp(data.data(), kSnapshotMagic, 8) != 0) {
    return bad("not a ledger snapshot (bad header)");
  }
  const uint64_t len = GetU64(data.data() + 8);
  if (len != data.size() - kSnapshotHeader) {
    return bad(
        absl::StrCat("has ", data.size() - kSnapshotHeader, " bytes, its header says ", len));
  }
  const char* payload = data.data() + kSnapshotHeader;
  if (internal::Crc32c(payload, len) != GetU32(data.data() + 16)) return bad("checksum mismatch");
  LedgerSnapshot snap;
  if (!snap.ParseFromArray(payload, static_cast<int>(len))) return bad("does not parse");
  return snap;
}

}  // namespace

std::string FileStore::LogName(uint64_t first_seq) {
  return absl::StrFormat("log-%020d.wal", first_seq);
}

std::string FileStore::SnapshotName(uint64_t seq) {
  return absl::StrFormat("snapshot-%020d.pb", seq);
}

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::Open(FileStoreOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("ledger store: no directory given");
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("create ledger directory ", options.dir, ": ", ec.message()));
  }
  const std::string lock = options.dir + "/LOCK";
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open", lock);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("ledger directory ", options.dir, " is in use by another process"));
    }
    return Errno("flock", lock, err);
  }
  return std::unique_ptr<FileStore>(new FileStore(std::move(options), fd));
}

FileStore::FileStore(FileStoreOptions options, int lock_fd)
    : options_(std::move(options)), lock_fd_(lock_fd) {}

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
  if (log_fd_ >= 0) ::close(log_fd_);
  ::close(lock_fd_);
}

absl::StatusOr<StoredState> FileStore::Recover() {
  CHECK(!recovered_) << "FileStore::Recover called twice";
  const std::string& dir = options_.dir;
  std::map<uint64_t, std::string> snapshots, logs;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const std::string path = e.path().string();
    uint64_t seq;
    if (absl::EndsWith(name, ".tmp")) {
      LOG(WARNING) << "ledger: removing " << path << ", left over from an interrupted snapshot";
      fs::remove(e.path(), ec);
    } else if (ParseName(name, "snapshot-", ".pb", &seq)) {
      snapshots[seq] = path;
    } else if (ParseName(name, "log-", ".wal", &seq)) {
      logs[seq] = path;
    }
  }
  if (ec) return absl::UnavailableError(absl::StrCat("list ", dir, ": ", ec.message()));

  StoredState state;
  uint64_t base = 0;
  if (!snapshots.empty()) {
    const auto& [seq, path] = *snapshots.rbegin();
    ASSIGN_OR_RETURN(LedgerSnapshot snap, ReadSnapshot(path));
    if (snap.seq() != seq) {
      return absl::DataLossError(absl::StrCat("ledger snapshot ", path, ": holds record ",
                                              snap.seq(), " but its name says ", seq));
    }
    base = seq;
    state.snapshot = std::move(snap);
    state.info.snapshot_file = path;
    for (const auto& [older, older_path] : snapshots) {
      if (older < seq) fs::remove(older_path, ec);
    }
  }
  std::vector<std::pair<uint64_t, std::string>> live;
  for (const auto& [start, path] : logs) {
    if (start <= base) {
      fs::remove(path, ec);  // wholly covered by the snapshot
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
    ASSIGN_OR_RETURN(std::string data, ReadWhole(path));
    size_t off = 0;
    std::string reason;
    while (off < data.size()) {
      const size_t left = data.size() - off;
      if (left < kFrameHeader) {
        reason = absl::StrCat("torn record header (", left, " bytes)");
        break;
      }
      const char* h = data.data() + off;
      const uint32_t len = GetU32(h);
      const uint64_t seq = GetU64(h + 8);
      if (len > kMaxRecordBytes) {
        reason = absl::StrCat("implausible record length ", len);
        break;
      }
      if (left - kFrameHeader < len) {
        reason = absl::StrCat("torn record (", left - kFrameHeader, " of ", len, " bytes)");
        break;
      }
      const char* payload = h + kFrameHeader;
      if (FrameCrc(internal::Crc32c(payload, len), seq) != GetU32(h + 4)) {
        reason = "checksum mismatch";
        break;
      }
      if (seq != expected) {
        reason = absl::StrCat("record ", seq, " where ", expected, " was expected");
        break;
      }
      LedgerRecord record;
      if (!record.ParseFromArray(payload, static_cast<int>(len))) {
        reason = "record does not parse";
        break;
      }
      state.records.push_back(std::move(record));
      ++expected;
      off += kFrameHeader + len;
    }
    if (reason.empty()) continue;
    if (i + 1 != live.size()) {
      return absl::DataLossError(absl::StrCat("ledger log ", path, " at offset ", off, ": ", reason,
                                              "; later log files follow, so this is not a torn "
                                              "tail and cutting it would lose their records"));
    }
    if (::truncate(path.c_str(), off) != 0) return Errno("truncate", path);
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      return Errno("fsync", path, err);
    }
    ::close(fd);
    state.info.truncated_file = path;
    state.info.truncated_offset = off;
    state.info.truncated_bytes = data.size() - off;
    state.info.truncation_reason = reason;
    LOG(ERROR) << "ledger log " << path << ": " << reason << " at offset " << off << "; cut "
               << data.size() - off << " bytes there (the records in them are lost)";
  }
  state.last_seq = expected - 1;
  state.info.records_replayed = state.records.size();
  {
    absl::MutexLock l(&mu_);
    last_seq_ = state.last_seq;
    snapshot_seq_ = base;
  }
  durable_seq_.store(state.last_seq);
  if (!live.empty()) {
    log_fd_ = ::open(live.back().second.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (log_fd_ < 0) return Errno("open", live.back().second);
    absl::MutexLock l(&mu_);
    log_start_ = live.back().first;
  } else {
    RETURN_IF_ERROR(OpenLog(expected));
  }
  recovered_ = true;
  writer_ = std::thread(&FileStore::WriterLoop, this);
  notifier_ = std::thread(&FileStore::NotifierLoop, this);
  return state;
}

absl::Status FileStore::OpenLog(uint64_t first_seq) {
  const std::string path = options_.dir + "/" + LogName(first_seq);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", path);
  RETURN_IF_ERROR(SyncDir(options_.dir));
  if (log_fd_ >= 0) ::close(log_fd_);
  log_fd_ = fd;
  absl::MutexLock l(&mu_);
  log_start_ = first_seq;
  return absl::OkStatus();
}

uint64_t FileStore::Append(const LedgerRecord& record) {
  CHECK(recovered_) << "FileStore::Append before Recover";
  std::string payload;
  record.SerializeToString(&payload);
  const uint32_t payload_crc = internal::Crc32c(payload.data(), payload.size());
  absl::MutexLock l(&mu_);
  const uint64_t seq = ++last_seq_;
  if (pending_.empty()) pending_.emplace_back();
  Chunk& c = pending_.back();
  PutU32(c.bytes, static_cast<uint32_t>(payload.size()));
  PutU32(c.bytes, FrameCrc(payload_crc, seq));
  PutU64(c.bytes, seq);
  c.bytes += payload;
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
    if (error_.ok() && seq > durable_seq_.load(std::memory_order_relaxed)) {
      waiters_.emplace_back(seq, std::move(done));
      return;
    }
    status = error_;
  }
  done(status);
}

void FileStore::WriterLoop() {
  for (;;) {
    std::vector<Chunk> batch;
    {
      absl::MutexLock l(&mu_);
      while (pending_.empty() && !stopping_) work_cv_.Wait(&mu_);
      if (pending_.empty()) return;
      batch.swap(pending_);
    }
    absl::Status s;
    uint64_t last = 0, syncs = 0;
    bool unsynced = false;
    auto sync = [&]() {
      if (!s.ok() || !unsynced || !options_.sync) return;
      if (::fdatasync(log_fd_) != 0) s = Errno("fdatasync ledger log in", options_.dir);
      ++syncs;
      unsynced = false;
    };
    for (const Chunk& c : batch) {
      if (c.start != 0) {
        sync();  // everything before a cut is durable in the old file first
        if (s.ok()) s = OpenLog(c.start);
      }
      if (s.ok() && !c.bytes.empty()) {
        s = WriteAll(log_fd_, c.bytes, "ledger log in " + options_.dir);
        unsynced = true;
      }
      last = std::max(last, c.last_seq);
    }
    sync();
    {
      absl::MutexLock l(&mu_);
      fsyncs_ += syncs;
      if (!s.ok() && error_.ok()) {
        LOG(ERROR) << "ledger store failed; nothing more becomes durable: " << s;
        error_ = s;
      }
      if (error_.ok() && last > durable_seq_.load(std::memory_order_relaxed)) {
        durable_seq_.store(last, std::memory_order_release);
      }
      const uint64_t durable = durable_seq_.load(std::memory_order_relaxed);
      const bool failed = !error_.ok();
      auto keep = std::partition(waiters_.begin(), waiters_.end(),
                                 [&](const auto& w) { return !failed && w.first > durable; });
      for (auto it = keep; it != waiters_.end(); ++it) {
        to_notify_.emplace_back(std::move(it->second), error_);
      }
      waiters_.erase(keep, waiters_.end());
      if (!to_notify_.empty()) notify_cv_.Signal();
      flushed_cv_.SignalAll();
    }
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
  Chunk cut;
  cut.start = last_seq_ + 1;
  pending_.push_back(std::move(cut));
  work_cv_.Signal();
  return last_seq_;
}

absl::Status FileStore::WriteSnapshot(const LedgerSnapshot& snapshot) {
  const uint64_t seq = snapshot.seq();
  std::string payload = snapshot.SerializeAsString();
  std::string bytes(kSnapshotMagic, 8);
  PutU64(bytes, payload.size());
  PutU32(bytes, internal::Crc32c(payload.data(), payload.size()));
  bytes += payload;
  const std::string path = options_.dir + "/" + SnapshotName(seq);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", tmp);
  absl::Status s = WriteAll(fd, bytes, tmp);
  if (s.ok() && options_.sync && ::fsync(fd) != 0) s = Errno("fsync", tmp);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = Errno("rename", tmp);
  if (s.ok()) s = SyncDir(options_.dir);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  {
    // The writer must have moved past the cut before the old log file goes.
    absl::MutexLock l(&mu_);
    while (log_start_ <= seq && error_.ok()) flushed_cv_.Wait(&mu_);
    if (!error_.ok()) return error_;
    snapshot_seq_ = std::max(snapshot_seq_, seq);
  }
  std::error_code ec;
  int removed = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(options_.dir, ec)) {
    const std::string name = e.path().filename().string();
    uint64_t n;
    if ((ParseName(name, "snapshot-", ".pb", &n) && n < seq) ||
        (ParseName(name, "log-", ".wal", &n) && n <= seq)) {
      if (fs::remove(e.path(), ec)) ++removed;
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
          .error = error_};
}

}  // namespace autoscale::ledger
