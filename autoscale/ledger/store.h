// LedgerStore: where the ledger keeps its changes durably (a seam: a file log here, a distributed
// store later, a memory store for tests and simulations).
//
// The ledger appends one record per change while it holds the lock of the node it changes, so the
// store's order is the order of the changes; it hands out a result only once the records that
// result depends on are durable (WhenDurable). Appending never waits for I/O: a store batches the
// records that arrive while it flushes (group commit).
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
  // A torn or corrupt tail cut off the log: the file, where it was cut, how many bytes were
  // dropped and why. Empty file: nothing was cut.
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

struct StoreStats {
  uint64_t records_appended = 0;
  uint64_t records_since_snapshot = 0;
  uint64_t fsyncs = 0;
  uint64_t durable_seq = 0;
  // OK unless the store failed; then nothing more becomes durable.
  absl::Status error{};
};

class LedgerStore {
 public:
  virtual ~LedgerStore() = default;

  // Reads what the store holds. Called once, before anything is appended.
  virtual absl::StatusOr<StoredState> Recover() = 0;

  // Appends `record` and returns its sequence number (the last one + 1). Never waits for I/O.
  virtual uint64_t Append(const LedgerRecord& record) = 0;

  // Calls `done` once records 1..seq are durable (OK), or with the error that stopped the store.
  // May call it before returning, or later from another thread.
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
