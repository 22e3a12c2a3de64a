#include "autoscale/ledger/etcd/layout.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::ledger::etcd {
namespace {

absl::Status Corrupt(const std::string& key, std::string_view why) {
  return absl::DataLossError(
      absl::StrCat("ledger in etcd, key ", key, ": ", absl::string_view(why.data(), why.size())));
}

uint64_t FirstSeq(const StoredState& s) { return s.last_seq - s.records.size() + 1; }

}  // namespace

Keys::Keys(std::string prefix) : prefix_(std::move(prefix)) {
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
}

std::string Keys::Log(uint64_t first_seq) const {
  return absl::StrFormat("%s%020d", LogPrefix(), first_seq);
}

std::string Keys::SnapshotChunks(uint64_t seq) const {
  return absl::StrFormat("%s%020d/", SnapshotPrefix(), seq);
}

std::string Keys::SnapshotChunk(uint64_t seq, uint32_t chunk) const {
  return absl::StrFormat("%s%06d", SnapshotChunks(seq), chunk);
}

absl::StatusOr<std::vector<etcdserverpb::KeyValue>> RangeAll(EtcdClient& etcd,
                                                             const std::string& key,
                                                             const std::string& range_end,
                                                             int64_t* revision, int64_t page) {
  std::vector<etcdserverpb::KeyValue> out;
  etcdserverpb::RangeRequest r;
  r.set_key(key);
  r.set_range_end(range_end);
  r.set_limit(page);
  r.set_revision(*revision);
  for (;;) {
    ASSIGN_OR_RETURN(etcdserverpb::RangeResponse resp, etcd.Range(r));
    if (r.revision() == 0) {
      // Later pages read the same revision as the first.
      r.set_revision(resp.header().revision());
      *revision = resp.header().revision();
    }
    for (etcdserverpb::KeyValue& kv : *resp.mutable_kvs()) out.push_back(std::move(kv));
    if (!resp.more() || resp.kvs_size() == 0) return out;
    r.set_key(out.back().key() + std::string(1, '\0'));
  }
}

absl::Status ApplyBatch(const Keys& keys, const etcdserverpb::KeyValue& kv, EtcdLedger& ledger) {
  LedgerBatch batch;
  if (!batch.ParseFromString(kv.value())) return Corrupt(kv.key(), "the batch does not parse");
  if (batch.records_size() == 0) return Corrupt(kv.key(), "an empty batch");
  if (kv.key() != keys.Log(batch.first_seq())) {
    return Corrupt(kv.key(), absl::StrCat("holds a batch starting at record ", batch.first_seq()));
  }
  StoredState& s = ledger.state;
  const uint64_t first = batch.first_seq();
  const uint64_t last = first + batch.records_size() - 1;
  if (last <= s.last_seq) return absl::OkStatus();  // held already: a retried write
  if (first != s.last_seq + 1) {
    return Corrupt(
        kv.key(), absl::StrCat("records ", first, "..", last, " where record ", s.last_seq + 1,
                               " comes next (",
                               first > s.last_seq ? "a batch is missing" : "batches overlap", ")"));
  }
  std::vector<LedgerRecord> records(batch.records_size());
  for (int i = 0; i < batch.records_size(); ++i) {
    if (!records[i].ParseFromString(batch.records(i))) {
      return Corrupt(kv.key(), absl::StrCat("record ", first + i, " does not parse"));
    }
  }
  for (LedgerRecord& r : records) s.records.push_back(std::move(r));
  s.last_seq = last;
  s.info.records_replayed = s.records.size();
  ledger.revision = std::max(ledger.revision, kv.mod_revision());
  return absl::OkStatus();
}

absl::Status ApplySnapshotHead(EtcdClient& etcd, const Keys& keys,
                               const etcdserverpb::KeyValue& head_kv, int64_t revision,
                               EtcdLedger& ledger) {
  SnapshotHead head;
  if (!head_kv.value().empty() && !head.ParseFromString(head_kv.value())) {
    return Corrupt(head_kv.key(), "the snapshot head does not parse");
  }
  if (head.seq() == 0 || head.chunks() == 0)
    return Corrupt(head_kv.key(), "an empty snapshot head");
  int64_t at = revision;
  ASSIGN_OR_RETURN(std::vector<etcdserverpb::KeyValue> chunks,
                   RangeAll(etcd, keys.SnapshotChunks(head.seq()),
                            PrefixEnd(keys.SnapshotChunks(head.seq())), &at, /*page=*/4));
  const std::string where = absl::StrCat(head_kv.key(), " (snapshot of record ", head.seq(), ")");
  if (chunks.size() != head.chunks()) {
    return Corrupt(where,
                   absl::StrCat(chunks.size(), " chunks where the head says ", head.chunks()));
  }
  std::string bytes;
  for (uint32_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].key() != keys.SnapshotChunk(head.seq(), i)) {
      return Corrupt(where, absl::StrCat("chunk ", i, " is missing (found ", chunks[i].key(), ")"));
    }
    bytes += chunks[i].value();
  }
  if (bytes.size() != head.bytes()) {
    return Corrupt(where, absl::StrCat(bytes.size(), " bytes where the head says ", head.bytes()));
  }
  LedgerSnapshot snapshot;
  if (!snapshot.ParseFromString(bytes)) return Corrupt(where, "the snapshot does not parse");
  if (snapshot.seq() != head.seq()) {
    return Corrupt(where, absl::StrCat("the snapshot holds record ", snapshot.seq()));
  }
  StoredState& s = ledger.state;
  if (head.seq() >= s.last_seq) {
    s.records.clear();
    s.last_seq = head.seq();
  } else if (s.records.size() > 0 && head.seq() >= FirstSeq(s)) {
    s.records.erase(s.records.begin(), s.records.begin() + (head.seq() - FirstSeq(s) + 1));
  }
  s.snapshot = std::move(snapshot);
  s.info.snapshot_file = where;
  s.info.records_replayed = s.records.size();
  ledger.revision = std::max(ledger.revision, head_kv.mod_revision());
  return absl::OkStatus();
}

absl::StatusOr<EtcdLedger> ReadLedger(EtcdClient& etcd, const Keys& keys) {
  absl::Status last;
  // The revision read first can be compacted away while the rest is read: read again.
  for (int attempt = 0; attempt < 3; ++attempt) {
    EtcdLedger ledger;
    int64_t revision = 0;
    absl::StatusOr<std::vector<etcdserverpb::KeyValue>> head =
        RangeAll(etcd, keys.SnapshotHead(), "", &revision);
    if (!head.ok()) return head.status();
    ledger.revision = revision;
    absl::Status s;
    if (!head->empty()) s = ApplySnapshotHead(etcd, keys, head->front(), revision, ledger);
    if (s.ok()) {
      absl::StatusOr<std::vector<etcdserverpb::KeyValue>> log = RangeAll(
          etcd, keys.Log(ledger.state.last_seq + 1), PrefixEnd(keys.LogPrefix()), &revision);
      s = log.status();
      for (size_t i = 0; s.ok() && i < log->size(); ++i) s = ApplyBatch(keys, (*log)[i], ledger);
    }
    if (absl::IsOutOfRange(s)) {  // "required revision has been compacted"
      last = s;
      continue;
    }
    RETURN_IF_ERROR(s);
    ledger.revision = revision;
    return ledger;
  }
  return last;
}

absl::Status CatchUp(EtcdClient& etcd, const Keys& keys, EtcdLedger& ledger) {
  int64_t revision = 0;
  ASSIGN_OR_RETURN(std::vector<etcdserverpb::KeyValue> head,
                   RangeAll(etcd, keys.SnapshotHead(), "", &revision));
  uint64_t head_seq = 0;
  if (!head.empty()) {
    SnapshotHead h;
    if (!h.ParseFromString(head.front().value())) {
      return Corrupt(head.front().key(), "the snapshot head does not parse");
    }
    head_seq = h.seq();
  }
  const uint64_t held = ledger.state.snapshot ? ledger.state.snapshot->seq() : 0;
  if (head_seq != held) {
    // A newer snapshot replaced the records after the one held: read it all again.
    ASSIGN_OR_RETURN(ledger, ReadLedger(etcd, keys));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<etcdserverpb::KeyValue>> log =
      RangeAll(etcd, keys.Log(ledger.state.last_seq + 1), PrefixEnd(keys.LogPrefix()), &revision);
  if (absl::IsOutOfRange(log.status())) {
    ASSIGN_OR_RETURN(ledger, ReadLedger(etcd, keys));
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(log.status());
  for (const etcdserverpb::KeyValue& kv : *log) RETURN_IF_ERROR(ApplyBatch(keys, kv, ledger));
  ledger.revision = revision;
  return absl::OkStatus();
}

}  // namespace autoscale::ledger::etcd
