#include "autoscale/ledger/memory_store.h"

#include <utility>

namespace autoscale::ledger {

MemoryStore::MemoryStore(StoredState state) {
  state.info = {};
  seqs_.resize(state.records.size());
  const uint64_t first = state.last_seq - state.records.size() + 1;
  for (size_t i = 0; i < seqs_.size(); ++i) seqs_[i] = first + i;
  state_ = std::move(state);
}

absl::StatusOr<StoredState> MemoryStore::Recover() {
  absl::MutexLock l(&mu_);
  StoredState s = state_;
  s.info.records_replayed = s.records.size();
  return s;
}

uint64_t MemoryStore::Append(const LedgerRecord& record) {
  absl::MutexLock l(&mu_);
  state_.records.push_back(record);
  seqs_.push_back(++state_.last_seq);
  ++appended_;
  return state_.last_seq;
}

void MemoryStore::WhenDurable(uint64_t, std::function<void(absl::Status)> done) {
  done(absl::OkStatus());
}

uint64_t MemoryStore::Cut() {
  absl::MutexLock l(&mu_);
  return state_.last_seq;
}

absl::Status MemoryStore::WriteSnapshot(const LedgerSnapshot& snapshot) {
  absl::MutexLock l(&mu_);
  state_.snapshot = snapshot;
  size_t keep = 0;
  while (keep < seqs_.size() && seqs_[keep] <= snapshot.seq()) ++keep;
  state_.records.erase(state_.records.begin(), state_.records.begin() + keep);
  seqs_.erase(seqs_.begin(), seqs_.begin() + keep);
  return absl::OkStatus();
}

StoreStats MemoryStore::Stats() const {
  absl::MutexLock l(&mu_);
  return {.records_appended = appended_,
          .records_since_snapshot = state_.records.size(),
          .fsyncs = 0,
          .durable_seq = state_.last_seq,
          .error = absl::OkStatus()};
}

StoredState MemoryStore::Contents() const {
  absl::MutexLock l(&mu_);
  return state_;
}

}  // namespace autoscale::ledger
