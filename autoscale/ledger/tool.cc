#include "autoscale/ledger/tool.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/log_format.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/ledger/tool.pb.h"
#include "glog/logging.h"

namespace autoscale::ledger {
namespace {

using internal::Frame;
using internal::LogScan;

absl::StatusOr<std::unique_ptr<FileLock>> LockStopped(FileSystem& fs, const std::string& dir) {
  absl::StatusOr<std::unique_ptr<FileLock>> lock = fs.Lock(dir + "/" + internal::kLockName);
  if (absl::IsFailedPrecondition(lock.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("ledger directory ", dir, " is in use by a running scheduler: stop it first"));
  }
  return lock;
}

// Every valid frame from `from` on, with sequence numbers of at least `min_seq`; past damage, from
// the next valid frame on.
std::vector<Frame> FramesFrom(std::string_view data, uint64_t from, uint64_t min_seq) {
  std::vector<Frame> out;
  while (from < data.size()) {
    const LogScan scan = internal::ScanLog(data.substr(from), min_seq);
    for (Frame f : scan.frames) {
      f.offset += from;
      out.push_back(f);
    }
    if (!scan.later) break;
    from += scan.later->offset;
    min_seq = scan.later->seq;
  }
  return out;
}

// The directory as a start would read it.
struct Layout {
  internal::LedgerFiles files;
  std::optional<LedgerSnapshot> snapshot;
  absl::Status snapshot_error;
  uint64_t base = 0;
  // The log files after the snapshot, in order.
  std::vector<std::pair<uint64_t, std::string>> live;
};

absl::StatusOr<Layout> ReadLayout(FileSystem& fs, const std::string& dir) {
  Layout l;
  ASSIGN_OR_RETURN(l.files, internal::ListLedgerFiles(fs, dir));
  if (!l.files.snapshots.empty()) {
    const auto& [seq, path] = *l.files.snapshots.rbegin();
    l.base = seq;
    absl::StatusOr<std::string> data = fs.ReadFile(path);
    absl::StatusOr<LedgerSnapshot> snap =
        data.ok() ? internal::DecodeSnapshot(*data, path) : data.status();
    if (snap.ok() && snap->seq() != seq) {
      snap = absl::DataLossError(absl::StrCat("ledger snapshot ", path, ": holds record ",
                                              snap->seq(), " but its name says ", seq));
    }
    if (snap.ok()) {
      l.snapshot = *std::move(snap);
    } else {
      l.snapshot_error = snap.status();
    }
  }
  for (const auto& [start, path] : l.files.logs) {
    if (start > l.base) l.live.emplace_back(start, path);
  }
  return l;
}

}  // namespace

absl::Status DumpLedger(FileSystem& fs, const std::string& dir, std::ostream& out) {
  ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, LockStopped(fs, dir));
  ASSIGN_OR_RETURN(Layout l, ReadLayout(fs, dir));
  if (!l.snapshot_error.ok()) return l.snapshot_error;
  if (l.snapshot) {
    DumpLine line;
    line.set_file(l.files.snapshots.rbegin()->second);
    line.set_seq(l.base);
    *line.mutable_snapshot() = *l.snapshot;
    out << ToJson(line) << "\n";
  }
  for (const auto& [start, path] : l.live) {
    ASSIGN_OR_RETURN(std::string data, fs.ReadFile(path));
    uint64_t off = 0, want = start;
    while (off <= data.size()) {
      LogScan scan = internal::ScanLog(std::string_view(data).substr(off), want);
      for (size_t i = 0; i < scan.frames.size(); ++i) {
        DumpLine line;
        line.set_file(path);
        line.set_offset(off + scan.frames[i].offset);
        line.set_seq(scan.frames[i].seq);
        *line.mutable_record() = std::move(scan.records[i]);
        out << ToJson(line) << "\n";
      }
      want += scan.frames.size();
      if (scan.damage.empty()) break;
      DumpLine line;
      line.set_file(path);
      line.set_offset(off + scan.end);
      line.set_seq(want);
      line.set_damage(scan.damage);
      if (scan.later) {
        line.set_later_valid_seq(scan.later->seq);
        line.set_later_valid_offset(off + scan.later->offset);
      }
      out << ToJson(line) << "\n";
      if (!scan.later) break;
      off += scan.later->offset;
      want = scan.later->seq;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifyReport> VerifyLedger(FileSystem& fs, const std::string& dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, LockStopped(fs, dir));
  ASSIGN_OR_RETURN(Layout l, ReadLayout(fs, dir));
  VerifyReport report;
  for (const std::string& tmp : l.files.temporary) {
    report.notes.push_back(absl::StrCat(tmp,
                                        ": left over from an interrupted snapshot (a start "
                                        "removes it)"));
  }
  if (!l.files.note.empty()) {
    report.notes.push_back(
        absl::StrCat(l.files.note, ": an operator's cut, reported and removed at the next start"));
  }
  if (!l.snapshot_error.ok()) {
    report.problems.push_back(std::string(l.snapshot_error.message()));
    return report;
  }
  StoredState state;
  if (l.snapshot) {
    report.snapshot_file = l.files.snapshots.rbegin()->second;
    report.snapshot_seq = l.base;
    state.snapshot = *l.snapshot;
  }
  uint64_t expected = l.base + 1;
  bool readable = true;  // no damage so far: records still count
  for (size_t i = 0; i < l.live.size(); ++i) {
    const auto& [start, path] = l.live[i];
    if (start != expected && readable) {
      report.problems.push_back(absl::StrCat(path, " starts at record ", start, " but record ",
                                             expected, " comes next: records ", expected, "..",
                                             start - 1, " are missing"));
      readable = false;
    }
    ASSIGN_OR_RETURN(std::string data, fs.ReadFile(path));
    LogScan scan = internal::ScanLog(data, start);
    if (readable) {
      for (LedgerRecord& r : scan.records) state.records.push_back(std::move(r));
      expected = start + scan.frames.size();
    }
    if (scan.damage.empty()) continue;
    const std::string where = absl::StrCat(path, " at offset ", scan.end, ", where record ",
                                           start + scan.frames.size(), " should be: ", scan.damage);
    const bool last_file = i + 1 == l.live.size();
    if (scan.later) {
      const std::vector<Frame> after = FramesFrom(data, scan.later->offset, scan.later->seq);
      report.problems.push_back(
          absl::StrCat(where, "; valid records ", after.front().seq, "..", after.back().seq,
                       " follow from offset ", after.front().offset,
                       " (not a torn tail: a start refuses it; `ledgerctl truncate --at=",
                       start + scan.frames.size(), "` drops record ", start + scan.frames.size(),
                       " and every later one)"));
      readable = false;
    } else if (!last_file) {
      report.problems.push_back(
          absl::StrCat(where, "; later log files follow (a start refuses it)"));
      readable = false;
    } else {
      report.notes.push_back(absl::StrCat(where, "; nothing valid after it: a torn tail of ",
                                          data.size() - scan.end, " bytes, which a start cuts"));
    }
  }
  report.records = state.records.size();
  report.last_seq = l.base + state.records.size();
  state.last_seq = report.last_seq;
  // Replay to the end (of what a start would read) and check the result.
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      Ledger::Open({}, std::make_unique<MemoryStore>(std::move(state)));
  if (!ledger.ok()) {
    report.problems.push_back(absl::StrCat("replay: ", ledger.status().message()));
    return report;
  }
  if (absl::Status s = (*ledger)->CheckInvariants(); !s.ok()) {
    report.problems.push_back(absl::StrCat("invariants after replay: ", s.message()));
  }
  report.nodes = (*ledger)->ListNodes().size();
  report.vms = (*ledger)->ListVms().size();
  return report;
}

absl::StatusOr<TruncateReport> TruncateLedger(FileSystem& fs, const std::string& dir, uint64_t at) {
  ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, LockStopped(fs, dir));
  ASSIGN_OR_RETURN(Layout l, ReadLayout(fs, dir));
  RETURN_IF_ERROR(l.snapshot_error);
  if (at <= l.base) {
    return absl::FailedPreconditionError(
        absl::StrCat("record ", at, " is in the snapshot ", l.files.snapshots.rbegin()->second,
                     " (records up to ", l.base, "): the log can be cut only after it"));
  }
  // The file that holds (or should hold) record `at`: the last one starting at or before it.
  size_t index = l.live.size();
  for (size_t i = 0; i < l.live.size(); ++i) {
    if (l.live[i].first <= at) index = i;
  }
  if (index == l.live.size()) {
    return absl::FailedPreconditionError(absl::StrCat("no log file holds record ", at));
  }
  const auto& [start, path] = l.live[index];
  ASSIGN_OR_RETURN(std::string data, fs.ReadFile(path));
  const LogScan scan = internal::ScanLog(data, start);
  const uint64_t first_bad = start + scan.frames.size();
  uint64_t offset;
  if (at < first_bad) {
    offset = scan.frames[at - start].offset;
  } else if (at == first_bad && (!scan.damage.empty() || index + 1 < l.live.size())) {
    offset = scan.end;
  } else if (at == first_bad) {
    return absl::FailedPreconditionError(
        absl::StrCat("the log ends at record ", first_bad - 1, ": nothing to cut at ", at));
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "record ", at, " lies beyond the damage in ", path, " at offset ", scan.end,
        " (where record ", first_bad, " should be): records after a hole cannot be kept; cut at ",
        first_bad, " or before"));
  }

  TruncateReport report;
  report.file = path;
  report.offset = offset;
  report.bytes = data.size() - offset;
  report.at = at;
  // What is dropped: the readable records in the rest of this file and in later files.
  auto count = [&](const std::vector<Frame>& frames) {
    for (const Frame& f : frames) {
      if (f.seq < at) continue;
      ++report.readable_records;
      report.last_readable_seq = std::max(report.last_readable_seq, f.seq);
    }
  };
  count(FramesFrom(data, offset, at));
  std::vector<std::string> later;
  for (size_t i = index + 1; i < l.live.size(); ++i) {
    later.push_back(l.live[i].second);
    absl::StatusOr<std::string> more = fs.ReadFile(l.live[i].second);
    if (more.ok()) count(FramesFrom(*more, 0, l.live[i].first));
  }
  report.reason = absl::StrCat(
      "cut by `ledgerctl truncate --at=", at, "` at ", absl::FormatTime(absl::Now()),
      ": records from ", at, " on dropped (", report.readable_records, " readable",
      report.readable_records > 0 ? absl::StrCat(", up to record ", report.last_readable_seq) : "",
      "), ", report.bytes, " bytes of ", path, " from offset ", offset,
      later.empty() ? "" : absl::StrCat(" and ", later.size(), " later log files"));

  // The note first: if this stops half-way, the next start still says an operator cut here.
  TruncationNote note;
  note.set_file(path);
  note.set_offset(offset);
  note.set_bytes(report.bytes);
  note.set_reason(report.reason);
  const std::string note_path = dir + "/" + internal::kTruncationNoteName;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs.OpenForAppend(note_path + ".tmp", true));
    RETURN_IF_ERROR(f->Append(note.SerializeAsString()));
    RETURN_IF_ERROR(f->Sync());
  }
  RETURN_IF_ERROR(fs.Rename(note_path + ".tmp", note_path));
  {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, fs.OpenForAppend(path, false));
    RETURN_IF_ERROR(f->Truncate(offset));
    RETURN_IF_ERROR(f->Sync());
  }
  for (const std::string& p : later) {
    RETURN_IF_ERROR(fs.Remove(p));
    report.removed_files.push_back(p);
  }
  RETURN_IF_ERROR(fs.SyncDir(dir));
  LOG(WARNING) << "ledger log " << path << ": " << report.reason;
  return report;
}

}  // namespace autoscale::ledger
