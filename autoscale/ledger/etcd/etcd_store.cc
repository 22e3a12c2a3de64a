#include "autoscale/ledger/etcd/etcd_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/etcd/etcd_store.pb.h"
#include "glog/logging.h"

namespace autoscale::ledger::etcd {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;

// How long WriteSnapshot waits for the records it covers to become durable.
constexpr absl::Duration kSnapshotWait = absl::Seconds(5);
// Attempts of each snapshot write (each tries every endpoint) before the snapshot is given up
// (the next maintenance round tries again).
constexpr int kSnapshotAttempts = 3;

void AddPut(TxnRequest& t, const std::string& key, std::string value) {
  etcdserverpb::PutRequest* put = t.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::move(value));
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Open(EtcdStoreOptions options,
                                                           std::optional<EtcdLedger> warm) {
  if (options.client == nullptr) return absl::InvalidArgumentError("etcd ledger store: no client");
  if (options.fence.key.empty() || options.fence.create_revision <= 0) {
    return absl::InvalidArgumentError(
        "etcd ledger store: every write is fenced on the leader's election key; none was given");
  }
  if (options.max_batch_bytes == 0 || options.snapshot_chunk_bytes == 0) {
    return absl::InvalidArgumentError("etcd ledger store: batch and chunk sizes must be > 0");
  }
  if (options.refuse_after < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd ledger store: refuse_after must be >= 0");
  }
  return std::unique_ptr<EtcdStore>(new EtcdStore(std::move(options), std::move(warm)));
}

EtcdStore::EtcdStore(EtcdStoreOptions options, std::optional<EtcdLedger> warm)
    : options_(std::move(options)), keys_(options_.prefix), warm_(std::move(warm)) {}

EtcdStore::~EtcdStore() {
  if (!writer_.joinable()) return;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    work_cv_.Signal();
  }
  writer_.join();
  {
    absl::MutexLock l(&mu_);
    const absl::Status closed = error_.ok() ? absl::UnavailableError(
                                                  "etcd ledger store closed before the "
                                                  "record was written")
                                            : error_;
    for (auto& [seq, done] : waiters_) to_notify_.emplace_back(std::move(done), closed);
    waiters_.clear();
    writer_done_ = true;
    notify_cv_.Signal();
  }
  notifier_.join();
}

absl::StatusOr<StoredState> EtcdStore::Recover() {
  CHECK(!recovered_) << "EtcdStore::Recover called twice";
  EtcdLedger ledger;
  if (warm_.has_value()) {
    ledger = *std::move(warm_);
    warm_.reset();
    RETURN_IF_ERROR(Annotate(CatchUp(*options_.client, keys_, ledger),
                             absl::StrCat("catching up the ledger under ", keys_.LedgerPrefix())));
  } else {
    absl::StatusOr<EtcdLedger> read = ReadLedger(*options_.client, keys_);
    if (!read.ok()) {
      return Annotate(read.status(),
                      absl::StrCat("reading the ledger under ", keys_.LedgerPrefix()));
    }
    ledger = *std::move(read);
  }
  recovered_revision_ = ledger.revision;
  {
    absl::MutexLock l(&mu_);
    last_seq_ = ledger.state.last_seq;
    snapshot_seq_ = ledger.state.snapshot ? ledger.state.snapshot->seq() : 0;
  }
  durable_seq_.store(ledger.state.last_seq);
  ledger.state.info.records_replayed = ledger.state.records.size();
  recovered_ = true;
  writer_ = std::thread(&EtcdStore::WriterLoop, this);
  notifier_ = std::thread(&EtcdStore::NotifierLoop, this);
  return std::move(ledger.state);
}

absl::Status EtcdStore::Writable(bool /*growth*/) const {
  if (healthy_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock l(&mu_);
  return !error_.ok() ? error_ : retry_error_;
}

absl::Status EtcdStore::stopped() const {
  absl::MutexLock l(&mu_);
  return error_;
}

uint64_t EtcdStore::Append(const LedgerRecord& record) {
  CHECK(recovered_) << "EtcdStore::Append before Recover";
  std::string bytes = record.SerializeAsString();
  CHECK_LE(bytes.size(), kMaxRecordBytes) << "the ledger checks a record's size before it";
  absl::MutexLock l(&mu_);
  const uint64_t seq = ++last_seq_;
  ++appended_;
  if (!error_.ok()) return seq;  // WhenDurable reports the error
  if (pending_.empty() || pending_.back().closed ||
      pending_.back().bytes + bytes.size() > options_.max_batch_bytes) {
    pending_.push_back(Batch{.first_seq = seq});
  }
  Batch& b = pending_.back();
  b.bytes += bytes.size();
  b.records.push_back(std::move(bytes));
  work_cv_.Signal();
  return seq;
}

void EtcdStore::WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) {
  if (seq <= durable_seq_.load(std::memory_order_acquire)) {
    done(absl::OkStatus());
    return;
  }
  absl::Status status;
  {
    absl::MutexLock l(&mu_);
    const bool durable = seq <= durable_seq_.load(std::memory_order_relaxed);
    if (error_.ok() && retry_error_.ok() && !durable) {
      waiters_.emplace_back(seq, std::move(done));
      return;
    }
    if (!durable) status = !error_.ok() ? error_ : retry_error_;
  }
  done(status);
}

uint64_t EtcdStore::Cut() {
  absl::MutexLock l(&mu_);
  if (!pending_.empty()) pending_.back().closed = true;
  return last_seq_;
}

void EtcdStore::Close(absl::Status why) {
  if (why.ok()) why = absl::UnavailableError("etcd ledger store closed");
  absl::MutexLock l(&mu_);
  closed_ = true;
  Fail(std::move(why));
  work_cv_.Signal();
}

void EtcdStore::Fail(absl::Status why) {
  if (error_.ok()) {
    LOG(ERROR) << "etcd ledger store stopped; nothing more becomes durable: " << why;
    error_ = std::move(why);
  }
  for (auto& [seq, done] : waiters_) to_notify_.emplace_back(std::move(done), error_);
  waiters_.clear();
  pending_.clear();
  SetHealthy();
  notify_cv_.Signal();
  durable_cv_.SignalAll();
}

void EtcdStore::Retrying(const absl::Status& why, bool refuse) {
  absl::MutexLock l(&mu_);
  ++write_errors_;
  if (!error_.ok() || !refuse) return;
  if (retry_error_.ok()) {
    LOG(ERROR) << "the ledger in etcd cannot be written: " << why
               << "; changes are refused until a retry lands";
  }
  retry_error_ = absl::UnavailableError(
      absl::StrCat("the ledger in etcd (", keys_.LedgerPrefix(), ") cannot be written (",
                   why.message(), "); changes are refused until it can (retrying)"));
  SetHealthy();
  // Waiters of records not yet durable learn it now; the records stay queued.
  for (auto& [seq, done] : waiters_) to_notify_.emplace_back(std::move(done), retry_error_);
  waiters_.clear();
  if (!to_notify_.empty()) notify_cv_.Signal();
}

absl::Status EtcdStore::Deposed() const {
  return absl::FailedPreconditionError(
      absl::StrCat("etcd ledger store: this scheduler is no longer the leader (its election key ",
                   options_.fence.key, " of revision ", options_.fence.create_revision,
                   " is gone); a write was refused"));
}

absl::StatusOr<TxnResponse> EtcdStore::FencedTxn(TxnRequest txn) {
  TxnRequest t;
  Compare* fence = t.add_compare();
  fence->set_result(Compare::EQUAL);
  fence->set_target(Compare::CREATE);
  fence->set_key(options_.fence.key);
  fence->set_create_revision(options_.fence.create_revision);
  for (Compare& c : *txn.mutable_compare()) *t.add_compare() = std::move(c);
  *t.mutable_success() = std::move(*txn.mutable_success());
  t.add_failure()->mutable_request_range()->set_key(options_.fence.key);
  for (etcdserverpb::RequestOp& op : *txn.mutable_failure()) *t.add_failure() = std::move(op);
  ASSIGN_OR_RETURN(TxnResponse r, options_.client->Txn(t));
  if (!r.succeeded()) {
    const auto& kvs = r.responses(0).response_range().kvs();
    if (kvs.empty() || kvs[0].create_revision() != options_.fence.create_revision) {
      return Deposed();
    }
  }
  return r;
}

absl::Status EtcdStore::WriteBatch(const Batch& batch) {
  LedgerBatch b;
  b.set_first_seq(batch.first_seq);
  for (const std::string& r : batch.records) b.add_records(r);
  b.set_writer(options_.fence.key);
  const std::string value = b.SerializeAsString();
  const std::string key = keys_.Log(batch.first_seq);
  TxnRequest t;
  // The batch's key must be new: an earlier attempt of this write may have landed.
  Compare* fresh = t.add_compare();
  fresh->set_result(Compare::EQUAL);
  fresh->set_target(Compare::CREATE);
  fresh->set_key(key);
  fresh->set_create_revision(0);
  AddPut(t, key, value);
  t.add_failure()->mutable_request_range()->set_key(key);

  absl::Duration backoff = absl::Milliseconds(50);
  const absl::Time start = absl::Now();
  for (int attempt = 1;; ++attempt) {
    if (closed_) return absl::UnavailableError("etcd ledger store closed");
    absl::StatusOr<TxnResponse> r = FencedTxn(t);
    if (r.ok()) {
      if (r->succeeded()) return absl::OkStatus();
      const auto& kvs = r->responses(1).response_range().kvs();
      if (!kvs.empty() && kvs[0].value() == value) return absl::OkStatus();  // landed before
      return absl::DataLossError(absl::StrCat("ledger in etcd: key ", key,
                                              " already holds another batch; records ",
                                              batch.first_seq, ".. were written twice"));
    }
    if (!IsTransient(r.status())) {
      return Annotate(r.status(), absl::StrCat("writing ledger batch ", key));
    }
    {
      absl::MutexLock l(&mu_);
      if (stopping_) {
        return Annotate(r.status(), absl::StrCat("ledger batch ", key, " not written at stop"));
      }
    }
    LOG_IF(WARNING, attempt == 1 || attempt % 10 == 0)
        << "ledger batch " << key << ": attempt " << attempt << " failed, retrying: " << r.status();
    Retrying(r.status(), absl::Now() - start >= options_.refuse_after);
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

void EtcdStore::WriterLoop() {
  for (;;) {
    Batch batch;
    {
      absl::MutexLock l(&mu_);
      while (pending_.empty() && !stopping_) work_cv_.Wait(&mu_);
      if (pending_.empty()) return;
      batch = std::move(pending_.front());
      pending_.pop_front();
    }
    const absl::Status s = WriteBatch(batch);
    if (absl::IsFailedPrecondition(s)) {
      // Said even when the store was closed meanwhile: it shows the fence at work.
      LOG(WARNING) << "etcd refused ledger batch " << keys_.Log(batch.first_seq) << " (records "
                   << batch.first_seq << ".." << batch.first_seq + batch.records.size() - 1
                   << "): " << s.message();
    }
    absl::MutexLock l(&mu_);
    if (!s.ok()) {
      Fail(s);
      continue;
    }
    ++commits_;
    if (!error_.ok()) continue;  // closed meanwhile: the waiters were told
    if (!retry_error_.ok()) {
      LOG(WARNING) << "the ledger in etcd is written again";
      retry_error_ = absl::OkStatus();
      SetHealthy();
    }
    const uint64_t last = batch.first_seq + batch.records.size() - 1;
    durable_seq_.store(std::max(last, durable_seq_.load(std::memory_order_relaxed)),
                       std::memory_order_release);
    auto keep = std::partition(waiters_.begin(), waiters_.end(),
                               [&](const auto& w) { return w.first > last; });
    for (auto it = keep; it != waiters_.end(); ++it) {
      to_notify_.emplace_back(std::move(it->second), absl::OkStatus());
    }
    waiters_.erase(keep, waiters_.end());
    if (!to_notify_.empty()) notify_cv_.Signal();
    durable_cv_.SignalAll();
  }
}

void EtcdStore::NotifierLoop() {
  for (;;) {
    std::vector<std::pair<std::function<void(absl::Status)>, absl::Status>> batch;
    {
      absl::MutexLock l(&mu_);
      while (to_notify_.empty() && !writer_done_) notify_cv_.Wait(&mu_);
      if (to_notify_.empty()) return;
      batch.swap(to_notify_);
    }
    for (auto& [done, status] : batch) done(status);
  }
}

absl::Status EtcdStore::WriteSnapshot(const LedgerSnapshot& snapshot) {
  const uint64_t seq = snapshot.seq();
  {
    // The batches the snapshot covers are deleted with it: they must have been written.
    absl::MutexLock l(&mu_);
    const absl::Time until = absl::Now() + kSnapshotWait;
    while (error_.ok() && durable_seq_.load() < seq && absl::Now() < until) {
      durable_cv_.WaitWithDeadline(&mu_, until);
    }
    if (!error_.ok()) return error_;
    if (durable_seq_.load() < seq) {
      return absl::UnavailableError(absl::StrCat("ledger snapshot of record ", seq,
                                                 ": the records it covers are not durable after ",
                                                 absl::FormatDuration(kSnapshotWait)));
    }
  }
  // One fenced write, a few times over while etcd cannot be reached.
  auto write = [&](const TxnRequest& t, const std::string& what) -> absl::StatusOr<TxnResponse> {
    absl::StatusOr<TxnResponse> r;
    for (int attempt = 0; attempt < kSnapshotAttempts; ++attempt) {
      if (closed_) return absl::UnavailableError("etcd ledger store closed");
      r = FencedTxn(t);
      if (r.ok() || !IsTransient(r.status())) break;
    }
    if (absl::IsFailedPrecondition(r.status())) {
      absl::MutexLock l(&mu_);
      Fail(r.status());
    }
    if (!r.ok()) return Annotate(r.status(), what);
    if (!r->succeeded()) return absl::InternalError(what + ": not applied");
    return r;
  };

  const std::string bytes = snapshot.SerializeAsString();
  const size_t chunk = options_.snapshot_chunk_bytes;
  const uint32_t chunks = std::max<size_t>(1, (bytes.size() + chunk - 1) / chunk);
  for (uint32_t i = 0; i < chunks; ++i) {
    TxnRequest t;
    AddPut(t, keys_.SnapshotChunk(seq, i), bytes.substr(i * chunk, chunk));
    RETURN_IF_ERROR(
        write(t, absl::StrCat("writing ledger snapshot chunk ", keys_.SnapshotChunk(seq, i)))
            .status());
  }
  SnapshotHead head;
  head.set_seq(seq);
  head.set_chunks(chunks);
  head.set_bytes(bytes.size());
  head.set_writer(options_.fence.key);
  TxnRequest t;
  AddPut(t, keys_.SnapshotHead(), head.SerializeAsString());
  etcdserverpb::DeleteRangeRequest* log = t.add_success()->mutable_request_delete_range();
  log->set_key(keys_.LogPrefix());
  log->set_range_end(keys_.Log(seq + 1));
  etcdserverpb::DeleteRangeRequest* old = t.add_success()->mutable_request_delete_range();
  old->set_key(keys_.SnapshotPrefix());
  old->set_range_end(keys_.SnapshotChunks(seq));
  ASSIGN_OR_RETURN(TxnResponse r,
                   write(t, absl::StrCat("writing ledger snapshot head ", keys_.SnapshotHead(),
                                         " (record ", seq, ")")));
  int64_t compact_to = 0;
  {
    absl::MutexLock l(&mu_);
    snapshot_seq_ = std::max(snapshot_seq_, seq);
    compact_to = last_snapshot_revision_;
    last_snapshot_revision_ = r.header().revision();
  }
  LOG(INFO) << "ledger snapshot in etcd: record " << seq << ", " << bytes.size() << " bytes in "
            << chunks << " chunks; deleted " << r.responses(1).response_delete_range().deleted()
            << " log batches";
  if (options_.compact && compact_to > 0) {
    if (absl::Status s = options_.client->Compact(compact_to); !s.ok()) {
      LOG(WARNING) << "compacting etcd's history up to revision " << compact_to << ": " << s;
    }
  }
  return absl::OkStatus();
}

StoreStats EtcdStore::Stats() const {
  absl::MutexLock l(&mu_);
  return {.records_appended = appended_,
          .records_since_snapshot = last_seq_ - snapshot_seq_,
          .fsyncs = commits_,
          .durable_seq = durable_seq_.load(),
          .error = !error_.ok() ? error_ : retry_error_,
          .write_errors = write_errors_};
}

}  // namespace autoscale::ledger::etcd
