// The logic of ledgerctl (examples/ledgerctl): a stopped scheduler's ledger directory read,
// checked and, on an operator's word, cut. Each call takes the directory's lock, so it refuses a
// directory a running scheduler holds.
//
//   DumpLedger(fs, "/var/lib/scheduler", std::cout);          // JSON lines
//   VerifyReport report = *VerifyLedger(fs, "/var/lib/scheduler");
//   if (!report.problems.empty()) ... // damage, gaps, records that do not replay, invariants
//   TruncateReport cut = *TruncateLedger(fs, "/var/lib/scheduler", /*at=*/50);
//   // records 50 and later are gone; the next start reports the cut (RecoveryInfo)
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscale/ledger/file_system.h"

namespace autoscale::ledger {

// Writes the snapshot and every log frame as JSON lines (DumpLine, tool.proto): the snapshot
// first, then each file's records in order, and where a file is damaged a line saying where, why
// and which valid record follows (the dump goes on from there).
absl::Status DumpLedger(FileSystem& fs, const std::string& dir, std::ostream& out);

struct VerifyReport {
  // The snapshot read (empty: none), and the records after it that replay.
  std::string snapshot_file;
  uint64_t snapshot_seq = 0;
  uint64_t records = 0;
  // The last record that replays: the ledger a start would recover.
  uint64_t last_seq = 0;
  // Nodes and VMs of that ledger.
  size_t nodes = 0;
  size_t vms = 0;
  // What would stop a start, or lose records: checksums, gaps in the sequence, records that do
  // not replay, broken invariants. Each names the file, the offset and the records.
  std::vector<std::string> problems;
  // What a start handles on its own (a torn tail it cuts, a temporary file it removes).
  std::vector<std::string> notes;
};

// Checks every checksum and sequence number, replays the snapshot and the log to their end and
// checks the ledger's invariants.
absl::StatusOr<VerifyReport> VerifyLedger(FileSystem& fs, const std::string& dir);

struct TruncateReport {
  // Where the log was cut, and the bytes dropped from that file.
  std::string file;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  // Later log files removed.
  std::vector<std::string> removed_files;
  // Records dropped: `at` and every later one; how many of them were readable, and the highest
  // sequence number among those (damaged bytes hold more that cannot be counted).
  uint64_t at = 0;
  uint64_t readable_records = 0;
  uint64_t last_readable_seq = 0;
  // The sentence left for the next start to report.
  std::string reason;
};

// Cuts the log so that record `at` and every later one are gone: at the frame of record `at`, or
// at the damage where `at` is the record expected. FAILED_PRECONDITION for an `at` inside the
// snapshot or beyond damage (records after a hole cannot be kept), or past the end.
absl::StatusOr<TruncateReport> TruncateLedger(FileSystem& fs, const std::string& dir, uint64_t at);

}  // namespace autoscale::ledger
