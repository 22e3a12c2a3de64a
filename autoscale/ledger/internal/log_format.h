// The FileStore's on-disk format, shared by the store (file_store.cc) and ledgerctl's logic
// (tool.cc). Private to the ledger library.
//
//   log-<first seq>.wal   frames [u32 length][u32 CRC-32C][u64 seq][length bytes: a LedgerRecord],
//                         little-endian; the CRC covers the record's bytes, then the seq
//   snapshot-<seq>.pb     "ASLEDGR1" [u64 length][u32 CRC-32C][length bytes: a LedgerSnapshot]
//   RESERVE               space held for a full disk (FileStoreOptions::reserve_bytes)
//   TRUNCATED             a TruncationNote left by `ledgerctl truncate` for the next start
//   LOCK                  flock'ed while a process has the directory open
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscale/ledger/file_system.h"
#include "autoscale/ledger/ledger.pb.h"

namespace autoscale::ledger::internal {

inline constexpr size_t kFrameHeader = 4 + 4 + 8;
inline constexpr char kReserveName[] = "RESERVE";
inline constexpr char kTruncationNoteName[] = "TRUNCATED";
inline constexpr char kLockName[] = "LOCK";

std::string LogName(uint64_t first_seq);
std::string SnapshotName(uint64_t seq);

// Appends one frame: `payload` (a serialized record, whose CRC-32C is `payload_crc`) as `seq`.
void AppendFrame(std::string& out, uint64_t seq, std::string_view payload, uint32_t payload_crc);
void AppendFrame(std::string& out, uint64_t seq, std::string_view payload);

std::string EncodeSnapshot(const LedgerSnapshot& snapshot);
// DATA_LOSS naming `path` when the bytes are not a whole, checksummed snapshot.
absl::StatusOr<LedgerSnapshot> DecodeSnapshot(std::string_view data, const std::string& path);

// One valid frame of a log file.
struct Frame {
  uint64_t offset = 0;
  uint64_t seq = 0;
  // Bytes of the whole frame, header included.
  uint64_t size = 0;
};

// A log file read from its start.
struct LogScan {
  // The valid frames, in order, with consecutive sequence numbers from the first expected one,
  // and their records.
  std::vector<Frame> frames;
  std::vector<LedgerRecord> records;
  // Where the valid frames end: the file's size when it is whole.
  uint64_t end = 0;
  // Why reading stopped before the file's end ("torn record header (5 bytes)", "checksum
  // mismatch", ...); empty when the file is whole.
  std::string damage;
  // A valid frame somewhere after the damage whose sequence number is not older than the one
  // expected at it. There is one when the damage is not a torn tail: bytes in the middle of the
  // file went bad, and cutting there would lose the records after them.
  std::optional<Frame> later;
};

// Reads `data`, whose first record should be `first_seq`.
LogScan ScanLog(std::string_view data, uint64_t first_seq);

// The ledger's files in a directory, by kind.
struct LedgerFiles {
  // Sequence number -> path.
  std::map<uint64_t, std::string> snapshots;
  std::map<uint64_t, std::string> logs;
  // Left over from an interrupted snapshot.
  std::vector<std::string> temporary;
  // The path of a TruncationNote, if one waits.
  std::string note;
};
absl::StatusOr<LedgerFiles> ListLedgerFiles(FileSystem& fs, const std::string& dir);

}  // namespace autoscale::ledger::internal
