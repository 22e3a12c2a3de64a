// EtcdStore: the ledger's durable log in etcd (keys in layout.h), for schedulers that run as an
// active/standby group (autoscale/scheduler/ha_scheduler.h).
//
// Appends go to an in-memory batch; one writer thread puts each batch as one etcd value in one
// transaction, and a notifier thread answers the waiters of every record in it while the writer
// sends the next: concurrent requests share one round of raft (group commit, as the file store
// shares one fsync). Batches are written one at a time and in order, so what is durable is always
// a prefix of the log.
//
// Fencing: every write is a transaction whose first compare is "the fence key (this scheduler's
// election key) still exists with the create revision it had when this scheduler was elected".
// etcd evaluates compares when it applies the transaction, so a scheduler whose lease expired
// (its key is gone) can never write, whatever it still believes or however late its request
// arrives. A write that fails that compare stops the store (FAILED_PRECONDITION): nothing more
// becomes durable and every waiter is told (stopped() says why).
//
// etcd out of reach (no quorum, no member answering): the store keeps every record not yet
// durable, in order, and sends the batch again with back-off until it lands (store.h's contract).
// For `refuse_after` (an etcd leader election, a member restarting) that only delays answers;
// after it, WhenDurable answers UNAVAILABLE at once, Writable refuses every change and Stats says
// why, and once a retry lands all of it clears. A retried batch is safe: its key must not exist
// yet, and a key that holds the same batch means the earlier attempt landed. A store never runs
// short of space here, so Writable does not tell growth apart.
//
// Snapshots: WriteSnapshot puts the snapshot's chunks, then in one transaction its head and the
// deletion of every batch it covers and of older snapshots; with `compact`, etcd's history before
// the previous snapshot is compacted too (followers that lag further read everything again).
//
//   ASSIGN_OR_RETURN(auto store, EtcdStore::Open({.client = etcd, .prefix = "/autoscale",
//                                                 .fence = election.fence()}, follower.Current()));
//   ASSIGN_OR_RETURN(auto ledger, Ledger::Open(options, std::move(store)));
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/layout.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger::etcd {

// A key that exists exactly while its owner may write, and its create revision: a re-created key
// (another lease, another term) has another.
struct Fence {
  std::string key{};
  int64_t create_revision = 0;
};

struct EtcdStoreOptions {
  std::shared_ptr<EtcdClient> client{};
  // Keys go under <prefix>/ledger/ (layout.h).
  std::string prefix{};
  Fence fence{};
  // A batch holds records up to this many bytes (etcd refuses requests over 1.5 MiB by default).
  size_t max_batch_bytes = size_t{1} << 20;
  size_t snapshot_chunk_bytes = size_t{1} << 20;
  // After each snapshot, compact etcd's history up to the previous snapshot.
  bool compact = true;
  // A batch that keeps failing with transient errors is retried quietly this long (an etcd
  // leader election, a member restarting) before changes are refused and waiters told
  // UNAVAILABLE; the retries go on after that.
  absl::Duration refuse_after = absl::Seconds(2);
};

class EtcdStore final : public LedgerStore {
 public:
  // `warm`: the ledger as a standby followed it (EtcdFollower::Current); Recover then reads only
  // what was written since. Does not contact etcd.
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Open(EtcdStoreOptions options,
                                                         std::optional<EtcdLedger> warm = {});
  // Writes what was appended (one attempt each), then stops; records it could not write fail.
  ~EtcdStore() override;

  absl::StatusOr<StoredState> Recover() override;
  absl::Status Writable(bool growth) const override;
  uint64_t Append(const LedgerRecord& record) override;
  void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) override;
  uint64_t Cut() override;
  absl::Status WriteSnapshot(const LedgerSnapshot& snapshot) override;
  // `fsyncs` counts the transactions that made batches durable; `write_errors` the attempts
  // that failed and were retried.
  StoreStats Stats() const override;

  // Why the store stopped for good (fenced off: another scheduler leads; or closed); OK while it
  // writes or retries. A scheduler steps down on it.
  absl::Status stopped() const;

  // Stops writing (a scheduler stepping down): what is not durable yet fails with `why`, and so
  // does everything appended later. A write in flight may still land; its waiters hear `why`.
  void Close(absl::Status why);

  // The etcd revision Recover read the ledger at.
  int64_t recovered_revision() const { return recovered_revision_; }

 private:
  // The records of one future batch (one etcd key).
  struct Batch {
    uint64_t first_seq = 0;
    std::vector<std::string> records{};
    size_t bytes = 0;
    // Cut: later records start a new batch.
    bool closed = false;
  };

  EtcdStore(EtcdStoreOptions options, std::optional<EtcdLedger> warm);
  void WriterLoop();
  void NotifierLoop();
  // Puts one batch until it is durable, the store stops, or the fence fails.
  absl::Status WriteBatch(const Batch& batch);
  // One fenced transaction (the fence compare first, a read of the fence key on failure).
  absl::StatusOr<etcdserverpb::TxnResponse> FencedTxn(etcdserverpb::TxnRequest txn);
  absl::Status Deposed() const;
  // Records the store's failure and answers every waiter with it.
  void Fail(absl::Status why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An attempt to write a batch failed and will be retried (the writer). With `refuse`, changes
  // are refused until a write lands and every waiter is answered with `why`.
  void Retrying(const absl::Status& why, bool refuse);
  void SetHealthy() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    healthy_.store(error_.ok() && retry_error_.ok(), std::memory_order_release);
  }

  const EtcdStoreOptions options_;
  const Keys keys_;
  std::optional<EtcdLedger> warm_;
  bool recovered_ = false;
  int64_t recovered_revision_ = 0;
  // The revision of the last snapshot head written (compaction goes up to the one before).
  int64_t last_snapshot_revision_ = 0;

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;     // pending_ has work, or stopping_/closed_
  absl::CondVar durable_cv_;  // durable_seq_ moved, or the store failed
  absl::CondVar notify_cv_;   // to_notify_ has callbacks, or writer_done_
  std::deque<Batch> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, std::function<void(absl::Status)>>> waiters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::function<void(absl::Status)>, absl::Status>> to_notify_
      ABSL_GUARDED_BY(mu_);
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snapshot_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  // Why the store stopped for good (OK: it has not).
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  // Why the batch being written did not land yet, while the writer retries (OK: it writes).
  absl::Status retry_error_ ABSL_GUARDED_BY(mu_);
  uint64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> durable_seq_{0};
  std::atomic<bool> closed_{false};
  // error_ and retry_error_ both OK, read without the lock on the request path (Writable).
  std::atomic<bool> healthy_{true};

  std::thread writer_;
  std::thread notifier_;
};

}  // namespace autoscale::ledger::etcd
