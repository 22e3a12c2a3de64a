// MemoryStore: a LedgerStore in memory, for tests and simulations. Every record is "durable" at
// once; the records and the last snapshot stay readable, so a test can rebuild a ledger from them
// (Ledger::Open with a MemoryStore built from another one's contents) and compare.
#pragma once

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger {

class MemoryStore : public LedgerStore {
 public:
  MemoryStore() = default;
  // A store holding `state` (for example another MemoryStore's Contents()).
  explicit MemoryStore(StoredState state);

  absl::StatusOr<StoredState> Recover() override;
  absl::Status Writable(bool) const override { return absl::OkStatus(); }
  uint64_t Append(const LedgerRecord& record) override;
  void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) override;
  uint64_t Cut() override;
  absl::Status WriteSnapshot(const LedgerSnapshot& snapshot) override;
  StoreStats Stats() const override;

  // The snapshot and the records after it.
  StoredState Contents() const;

 private:
  mutable absl::Mutex mu_;
  StoredState state_ ABSL_GUARDED_BY(mu_);
  // Sequence number of each record in state_.records.
  std::vector<uint64_t> seqs_ ABSL_GUARDED_BY(mu_);
  uint64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace autoscale::ledger
