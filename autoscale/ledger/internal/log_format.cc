#include "autoscale/ledger/internal/log_format.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/crc32c.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger::internal {
namespace {

constexpr char kSnapshotMagic[] = "ASLEDGR1";  // 8 bytes, without the NUL
constexpr size_t kSnapshotHeader = 8 + 8 + 4;

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
  return Crc32cExtend(payload_crc, s.data(), s.size());
}

// "<prefix><20 digits><suffix>" -> the number.
bool ParseName(const std::string& name, absl::string_view prefix, absl::string_view suffix,
               uint64_t* seq) {
  if (name.size() != prefix.size() + 20 + suffix.size()) return false;
  if (!absl::StartsWith(name, prefix) || !absl::EndsWith(name, suffix)) return false;
  return absl::SimpleAtoi(absl::string_view(name.data() + prefix.size(), 20), seq);
}

// Whether a valid frame with a sequence number of at least `min_seq` starts at `off`.
std::optional<Frame> FrameAt(std::string_view data, size_t off, uint64_t min_seq) {
  if (data.size() - off < kFrameHeader) return std::nullopt;
  const char* h = data.data() + off;
  const uint32_t len = GetU32(h);
  const uint64_t seq = GetU64(h + 8);
  if (len > kMaxRecordBytes || data.size() - off - kFrameHeader < len) return std::nullopt;
  // A later record lies within this many of the one expected (each frame takes 16 bytes at
  // least): checking the sequence number first keeps the search cheap on random bytes.
  if (seq < min_seq || seq - min_seq > data.size() / kFrameHeader) return std::nullopt;
  if (FrameCrc(Crc32c(h + kFrameHeader, len), seq) != GetU32(h + 4)) return std::nullopt;
  return Frame{.offset = off, .seq = seq, .size = kFrameHeader + len};
}

}  // namespace

std::string LogName(uint64_t first_seq) { return absl::StrFormat("log-%020d.wal", first_seq); }

std::string SnapshotName(uint64_t seq) { return absl::StrFormat("snapshot-%020d.pb", seq); }

void AppendFrame(std::string& out, uint64_t seq, std::string_view payload, uint32_t payload_crc) {
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, FrameCrc(payload_crc, seq));
  PutU64(out, seq);
  out.append(payload.data(), payload.size());
}

void AppendFrame(std::string& out, uint64_t seq, std::string_view payload) {
  AppendFrame(out, seq, payload, Crc32c(payload.data(), payload.size()));
}

std::string EncodeSnapshot(const LedgerSnapshot& snapshot) {
  const std::string payload = snapshot.SerializeAsString();
  std::string bytes(kSnapshotMagic, 8);
  PutU64(bytes, payload.size());
  PutU32(bytes, Crc32c(payload.data(), payload.size()));
  bytes += payload;
  return bytes;
}

absl::StatusOr<LedgerSnapshot> DecodeSnapshot(std::string_view data, const std::string& path) {
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
  if (Crc32c(payload, len) != GetU32(data.data() + 16)) return bad("checksum mismatch");
  LedgerSnapshot snap;
  if (!snap.ParseFromArray(payload, static_cast<int>(len))) return bad("does not parse");
  return snap;
}

LogScan ScanLog(std::string_view data, uint64_t first_seq) {
  LogScan scan;
  uint64_t expected = first_seq;
  size_t off = 0;
  while (off < data.size()) {
    const size_t left = data.size() - off;
    if (left < kFrameHeader) {
      scan.damage = absl::StrCat("torn record header (", left, " bytes)");
      break;
    }
    const char* h = data.data() + off;
    const uint32_t len = GetU32(h);
    const uint64_t seq = GetU64(h + 8);
    if (len > kMaxRecordBytes) {
      scan.damage = absl::StrCat("implausible record length ", len);
      break;
    }
    if (left - kFrameHeader < len) {
      scan.damage = absl::StrCat("torn record (", left - kFrameHeader, " of ", len, " bytes)");
      break;
    }
    if (FrameCrc(Crc32c(h + kFrameHeader, len), seq) != GetU32(h + 4)) {
      scan.damage = "checksum mismatch";
      break;
    }
    if (seq != expected) {
      scan.damage = absl::StrCat("record ", seq, " where ", expected, " was expected");
      break;
    }
    LedgerRecord record;
    if (!record.ParseFromArray(h + kFrameHeader, static_cast<int>(len))) {
      scan.damage = "record does not parse";
      break;
    }
    scan.frames.push_back({.offset = off, .seq = seq, .size = kFrameHeader + len});
    scan.records.push_back(std::move(record));
    ++expected;
    off += kFrameHeader + len;
  }
  scan.end = off;
  if (!scan.damage.empty()) {
    for (size_t p = off + 1; p + kFrameHeader <= data.size(); ++p) {
      if (std::optional<Frame> f = FrameAt(data, p, expected)) {
        scan.later = f;
        break;
      }
    }
  }
  return scan;
}

absl::StatusOr<LedgerFiles> ListLedgerFiles(FileSystem& fs, const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListDir(dir));
  LedgerFiles files;
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    uint64_t seq;
    if (absl::EndsWith(name, ".tmp")) {
      files.temporary.push_back(path);
    } else if (ParseName(name, "snapshot-", ".pb", &seq)) {
      files.snapshots[seq] = path;
    } else if (ParseName(name, "log-", ".wal", &seq)) {
      files.logs[seq] = path;
    } else if (name == kTruncationNoteName) {
      files.note = path;
    }
  }
  return files;
}

}  // namespace autoscale::ledger::internal
