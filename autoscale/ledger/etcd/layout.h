// Where a ledger lives in etcd, and reading it back. Under a prefix P (--etcd_prefix):
//
//   P/ledger/log/<first seq, 20 digits>         a LedgerBatch: the records of one group commit
//   P/ledger/snapshot                           a SnapshotHead: the latest snapshot's record and
//   size P/ledger/snapshot/<seq>/<chunk, 6 digits>   that snapshot's bytes, in chunks (etcd refuses
//                                               requests over 1.5 MiB)
//   P/election/<lease id, 16 hex digits>        candidates for leadership, each bound to its lease
//                                               (autoscale/scheduler/election.h)
//
// Batches never straddle a snapshot: a snapshot at record S deletes exactly the batches that
// start at or before S. A reader reads everything at one revision, so it never mixes two states.
//
//   Keys keys("/autoscale");
//   ASSIGN_OR_RETURN(EtcdLedger ledger, ReadLedger(*etcd, keys));  // snapshot + records after it
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/etcd_store.pb.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger::etcd {

class Keys {
 public:
  // `prefix` without a trailing "/" ("/autoscale", or "" for keys at the root).
  explicit Keys(std::string prefix);

  const std::string& prefix() const { return prefix_; }
  std::string Log(uint64_t first_seq) const;
  std::string LogPrefix() const { return prefix_ + "/ledger/log/"; }
  std::string SnapshotHead() const { return prefix_ + "/ledger/snapshot"; }
  // The prefix of every snapshot's chunks, and of one snapshot's.
  std::string SnapshotPrefix() const { return prefix_ + "/ledger/snapshot/"; }
  std::string SnapshotChunks(uint64_t seq) const;
  std::string SnapshotChunk(uint64_t seq, uint32_t chunk) const;
  std::string LedgerPrefix() const { return prefix_ + "/ledger/"; }
  std::string ElectionPrefix() const { return prefix_ + "/election/"; }

 private:
  std::string prefix_;
};

// The ledger as stored in etcd at `revision`, as a LedgerStore's Recover returns it.
struct EtcdLedger {
  StoredState state{};
  int64_t revision = 0;
};

// Reads the snapshot and the records after it, all at one revision.
absl::StatusOr<EtcdLedger> ReadLedger(EtcdClient& etcd, const Keys& keys);

// Brings `ledger` (read earlier, or followed) up to etcd's latest revision: the records written
// since, or everything again when a newer snapshot has replaced them.
absl::Status CatchUp(EtcdClient& etcd, const Keys& keys, EtcdLedger& ledger);

// Adds one log batch (the key and value of a P/ledger/log/ key) to `ledger`. A batch the ledger
// already holds is skipped (a write that was retried); one that leaves a gap, or overlaps what
// the ledger holds, is DATA_LOSS.
absl::Status ApplyBatch(const Keys& keys, const etcdserverpb::KeyValue& kv, EtcdLedger& ledger);

// Reads the snapshot whose head is `head` (a P/ledger/snapshot value read at `revision`) and makes
// it `ledger`'s: records it covers are dropped.
absl::Status ApplySnapshotHead(EtcdClient& etcd, const Keys& keys,
                               const etcdserverpb::KeyValue& head, int64_t revision,
                               EtcdLedger& ledger);

// Every key in [key, range_end) at `revision` (0: the latest; the revision read goes there),
// read in pages of `page` keys.
absl::StatusOr<std::vector<etcdserverpb::KeyValue>> RangeAll(EtcdClient& etcd,
                                                             const std::string& key,
                                                             const std::string& range_end,
                                                             int64_t* revision, int64_t page = 256);

}  // namespace autoscale::ledger::etcd
