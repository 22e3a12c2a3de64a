// LedgerStore: where the ledger keeps its changes durably (a seam: a file log here, a distributed
// store later, a memory store for tests and simulations).
//
// The ledger appends one record per change while it holds the lock of the node it changes, so the
// store's order is the order of the changes; it hands out a result only once the records that
// result depends on are durable (WhenDurable). Appending never waits for I/O: a store batches the
// records that arrive while it flushes (group commit).
//
// What every store promises (the ledger relies on nothing else):
//   - Order and prefix: the records that survive a crash are 1..n for some n at least the highest
//     sequence number WhenDurable said OK for. Nothing after a gap, nothing reordered.
//   - Failure: when it cannot write (a full disk, an I/O error, a lost connection) it keeps the
//     records not yet durable, in order, never writes past a record it could not write whole, and
//     retries on its own; meanwhile WhenDurable answers the error at once and Writable says why.
//     Once a retry succeeds those records become durable (their waiters were told UNAVAILABLE:
//     the ledger then holds at least what any answer promised, which is safe).
//   - Space: a store may keep room in reserve for when it runs short; then Writable refuses
//     growth (grants, placements, migration orders) but takes the changes that give capacity
//     back (decreases, releases, migration results, node settings), so the ledger never holds
//     more than it must.
//   - Recovery (Recover) returns only records that are durable: any it reads that might not be
//     (written by a process that died before syncing them) it makes durable first.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<FileStore> store, FileStore::Open({.dir = "/var/lib/sched"}));
//   ASSIGN_OR_RETURN(std::unique_ptr<Ledger> ledger, Ledger::Open(options, std::move(store)));
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/ledger/ledger.pb.h"

namespace autoscale::ledger {

// What reading the store found at start.
struct RecoveryInfo {
  // The snapshot read (empty: none) and the number of records replayed after it.
  std::string snapshot_file{};
  uint64_t records_replayed = 0;
  // A torn tail cut off the log at this start, or a cut an operator made since the last start
  // (ledgerctl truncate): the file, where it was cut, how many bytes were dropped and why.
  // Empty file: nothing was cut.
  std::string truncated_file{};
  uint64_t truncated_offset = 0;
  uint64_t truncated_bytes = 0;
  std::string truncation_reason{};
};

// The state a store holds: the latest snapshot and the records after it, in order.
struct StoredState {
  std::optional<LedgerSnapshot> snapshot{};
  std::vector<LedgerRecord> records{};
  // Sequence number of the last record (or of the snapshot when no record follows it).
  uint64_t last_seq = 0;
  RecoveryInfo info{};
};

// The largest record a store takes (and reads back). The ledger refuses a change whose record
// would be larger (INVALID_ARGUMENT) before it makes it.
inline constexpr uint32_t kMaxRecordBytes = 1 << 20;

struct StoreStats {
  uint64_t records_appended = 0;
  uint64_t records_since_snapshot = 0;
  uint64_t fsyncs = 0;
  uint64_t durable_seq = 0;
  // OK unless the store cannot write now (UNAVAILABLE, saying why): nothing more becomes
  // durable until a retry succeeds.
  absl::Status error{};
  // Short of space: the reserve is in use; only changes that give capacity back are taken.
  bool low_space = false;
  // Write errors since the start (each one retried).
  uint64_t write_errors = 0;
};

class LedgerStore {
 public:
  virtual ~LedgerStore() = default;

  // Reads what the store holds. Called once, before anything is appended.
  virtual absl::StatusOr<StoredState> Recover() = 0;

  // OK if a change may be appended now; UNAVAILABLE saying why not (the store cannot write, or
  // `growth` and the store is short of space). The ledger asks before it makes a change, so a
  // store that cannot write refuses changes instead of piling them up.
  virtual absl::Status Writable(bool growth) const = 0;

  // Appends `record` (at most kMaxRecordBytes) and returns its sequence number (the last one
  // + 1). Never waits for I/O.
  virtual uint64_t Append(const LedgerRecord& record) = 0;

  // Calls `done` once records 1..seq are durable (OK), or with the error that keeps the store
  // from writing them now. May call it before returning, or later from another thread.
  virtual void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) = 0;

  // Ends the current run of records: later appends follow a snapshot. Returns the sequence
  // number of the last record appended. The caller makes sure nothing is appended meanwhile.
  virtual uint64_t Cut() = 0;

  // Stores `snapshot` (covering records 1..snapshot.seq(), a value Cut() returned) durably and
  // drops the records and snapshots it makes unnecessary.
  virtual absl::Status WriteSnapshot(const LedgerSnapshot& snapshot) = 0;

  virtual StoreStats Stats() const = 0;
};

}  // namespace autoscale::ledger
