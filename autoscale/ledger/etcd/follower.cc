#include "autoscale/ledger/etcd/follower.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace autoscale::ledger::etcd {
namespace {

// The pause before reading again after a failure.
constexpr absl::Duration kRetry = absl::Milliseconds(200);

}  // namespace

std::unique_ptr<EtcdFollower> EtcdFollower::Start(std::shared_ptr<EtcdClient> etcd, Keys keys) {
  std::unique_ptr<EtcdFollower> f(new EtcdFollower(std::move(etcd), std::move(keys)));
  f->thread_ = std::thread(&EtcdFollower::Run, f.get());
  return f;
}

EtcdFollower::EtcdFollower(std::shared_ptr<EtcdClient> etcd, Keys keys)
    : etcd_(std::move(etcd)), keys_(std::move(keys)) {}

EtcdFollower::~EtcdFollower() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

std::optional<EtcdLedger> EtcdFollower::Current() const {
  absl::MutexLock l(&mu_);
  if (stale_) return std::nullopt;
  return ledger_;
}

int64_t EtcdFollower::revision() const {
  absl::MutexLock l(&mu_);
  return ledger_ ? ledger_->revision : 0;
}

absl::Status EtcdFollower::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

int EtcdFollower::reads() const {
  absl::MutexLock l(&mu_);
  return reads_;
}

bool EtcdFollower::OnResponse(const etcdserverpb::WatchResponse& response) {
  if (response.canceled() || response.compact_revision() > 0) {
    absl::MutexLock l(&mu_);
    status_ = absl::UnavailableError(absl::StrCat(
        "ledger watch canceled", response.compact_revision() > 0 ? " (fell behind compaction)" : "",
        ": ", response.cancel_reason()));
    return false;
  }
  for (const etcdserverpb::Event& e : response.events()) {
    if (e.type() != etcdserverpb::Event::PUT) continue;  // deletions follow snapshots
    const etcdserverpb::KeyValue& kv = e.kv();
    absl::Status s;
    if (kv.key() == keys_.SnapshotHead()) {
      // The chunks were written before the head: read them as of the head's revision. The read
      // happens outside the lock on a copy; only this thread changes the ledger.
      std::optional<EtcdLedger> copy;
      {
        absl::MutexLock l(&mu_);
        copy = ledger_;
      }
      s = ApplySnapshotHead(*etcd_, keys_, kv, kv.mod_revision(), *copy);
      if (s.ok()) {
        absl::MutexLock l(&mu_);
        ledger_ = std::move(copy);
      }
    } else if (absl::StartsWith(kv.key(), keys_.LogPrefix())) {
      absl::MutexLock l(&mu_);
      s = ApplyBatch(keys_, kv, *ledger_);
    } else {
      continue;  // a snapshot chunk: read with its head
    }
    if (!s.ok()) {
      LOG(WARNING) << "following the ledger: " << s << "; reading it again";
      absl::MutexLock l(&mu_);
      status_ = s;
      return false;
    }
  }
  absl::MutexLock l(&mu_);
  for (const etcdserverpb::Event& e : response.events()) {
    ledger_->revision = std::max(ledger_->revision, e.kv().mod_revision());
  }
  return true;
}

void EtcdFollower::Run() {
  for (;;) {
    bool stale;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      stale = stale_;
    }
    if (stale) {
      absl::StatusOr<EtcdLedger> read = ReadLedger(*etcd_, keys_);
      absl::MutexLock l(&mu_);
      ++reads_;
      if (!read.ok()) {
        status_ = read.status();
        LOG_EVERY_N(WARNING, 10) << "reading the ledger to follow it: " << read.status();
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRetry);
        continue;
      }
      ledger_ = *std::move(read);
      stale_ = false;
      status_ = absl::OkStatus();
    }
    etcdserverpb::WatchCreateRequest watch;
    watch.set_key(keys_.LedgerPrefix());
    watch.set_range_end(PrefixEnd(keys_.LedgerPrefix()));
    {
      absl::MutexLock l(&mu_);
      watch.set_start_revision(ledger_->revision + 1);
      watch_ended_ = false;
    }
    absl::StatusOr<std::unique_ptr<EtcdWatch>> w = etcd_->Watch(
        watch,
        [this](const etcdserverpb::WatchResponse& r) {
          if (!OnResponse(r)) {
            absl::MutexLock l(&mu_);
            stale_ = true;
            watch_ended_ = true;
          }
        },
        [this](absl::Status why) {
          absl::MutexLock l(&mu_);
          if (!absl::IsCancelled(why)) status_ = why;
          watch_ended_ = true;
        });
    {
      absl::MutexLock l(&mu_);
      if (!w.ok()) {
        status_ = w.status();
      } else {
        mu_.Await(absl::Condition(
            +[](EtcdFollower* f)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) { return f->stopping_ || f->watch_ended_; },
            this));
      }
    }
    // Outside the lock: ending the watch joins its thread, whose callbacks take the lock.
    w = absl::CancelledError();
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRetry);
  }
}

}  // namespace autoscale::ledger::etcd
