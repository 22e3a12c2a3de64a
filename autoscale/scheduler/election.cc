#include "autoscale/scheduler/election.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/etcd/layout.h"
#include "glog/logging.h"

namespace autoscale::scheduler {
namespace {

using etcdserverpb::Compare;
using SteadyClock = std::chrono::steady_clock;

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

// The part of the TTL not counted on. etcd expires a lease no earlier than a TTL after it
// received the renewal (which is after it was sent) and checks expiry only every 500 ms, but
// clocks drift.
absl::Duration Margin(absl::Duration ttl) { return std::max(ttl / 10, absl::Milliseconds(100)); }

// How often the queue is read even when the watch says nothing (a watch on a member that is
// frozen says nothing at all).
constexpr absl::Duration kLookEvery = absl::Seconds(1);

}  // namespace

absl::StatusOr<std::unique_ptr<Election>> Election::Start(
    std::shared_ptr<ledger::etcd::EtcdClient> etcd, ElectionOptions options) {
  if (options.value.empty()) {
    return absl::InvalidArgumentError("election: a candidate needs a value (its address)");
  }
  if (options.lease_ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat("election: the lease TTL must be >= 1s, got ",
                                                   absl::FormatDuration(options.lease_ttl)));
  }
  std::unique_ptr<Election> e(new Election(std::move(etcd), std::move(options)));
  const SteadyClock::time_point sent = SteadyClock::now();
  ASSIGN_OR_RETURN(etcdserverpb::LeaseGrantResponse grant,
                   e->etcd_->LeaseGrant(e->options_.lease_ttl));
  e->lease_id_ = grant.id();
  e->ttl_ = absl::Seconds(grant.ttl());
  e->valid_until_ = (sent + ToChrono(e->ttl_ - Margin(e->ttl_))).time_since_epoch().count();
  e->next_renewal_ = sent + ToChrono(e->ttl_ / 3);

  const std::string key = absl::StrFormat("%s%016x", e->election_prefix_, e->lease_id_);
  etcdserverpb::TxnRequest t;
  Compare* fresh = t.add_compare();
  fresh->set_result(Compare::EQUAL);
  fresh->set_target(Compare::CREATE);
  fresh->set_key(key);
  fresh->set_create_revision(0);
  etcdserverpb::PutRequest* put = t.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(e->options_.value);
  put->set_lease(e->lease_id_);
  t.add_failure()->mutable_request_range()->set_key(key);
  absl::StatusOr<etcdserverpb::TxnResponse> r = e->etcd_->Txn(t);
  int64_t created = 0;
  if (r.ok() && r->succeeded()) {
    created = r->header().revision();
  } else if (r.ok()) {
    // The key exists: a retried put that landed the first time, if it is bound to this lease.
    const auto& kvs = r->responses(0).response_range().kvs();
    if (!kvs.empty() && kvs[0].lease() == e->lease_id_) created = kvs[0].create_revision();
  }
  if (created == 0) {
    (void)e->etcd_->LeaseRevoke(e->lease_id_);
    return r.ok() ? absl::InternalError(
                        absl::StrCat("election key ", key, " exists with another lease"))
                  : Annotate(r.status(), absl::StrCat("putting election key ", key));
  }
  e->fence_ = {.key = key, .create_revision = created};
  e->Observe();
  LOG(INFO) << "election: candidate " << key << " (" << e->options_.value << ", lease TTL "
            << absl::FormatDuration(e->ttl_) << ")"
            << (e->leading() ? ", leading" : absl::StrCat(", standby of ", e->leader()));
  e->renewer_ = std::thread(&Election::Renew, e.get());
  e->observer_ = std::thread(&Election::Run, e.get());
  return e;
}

Election::Election(std::shared_ptr<ledger::etcd::EtcdClient> etcd, ElectionOptions options)
    : etcd_(std::move(etcd)),
      options_(std::move(options)),
      election_prefix_(ledger::etcd::Keys(options_.prefix).ElectionPrefix()) {}

Election::~Election() {
  if (observer_.joinable()) {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    renewer_.join();
    observer_.join();
  }
  if (!fence_.key.empty()) Resign();
}

bool Election::LeaseValid() const {
  return !lost_.load() && SteadyClock::now().time_since_epoch().count() < valid_until_.load();
}

std::string Election::leader() const {
  absl::MutexLock l(&mu_);
  return leader_;
}

void Election::Lose(const std::string& why) {
  leading_ = false;
  valid_until_ = 0;
  if (lost_.exchange(true)) return;
  LOG(WARNING) << "election: " << fence_.key << " lost: " << why;
  if (options_.on_lost) options_.on_lost();
}

void Election::Resign() {
  if (resigned_.exchange(true)) return;
  if (!lost_.load()) {
    etcdserverpb::TxnRequest t;
    Compare* mine = t.add_compare();
    mine->set_result(Compare::EQUAL);
    mine->set_target(Compare::CREATE);
    mine->set_key(fence_.key);
    mine->set_create_revision(fence_.create_revision);
    t.add_success()->mutable_request_delete_range()->set_key(fence_.key);
    if (absl::Status s = etcd_->Txn(t).status(); !s.ok()) {
      LOG(WARNING) << "election: resigning " << fence_.key << ": " << s;
    }
  }
  Lose("resigned");
  (void)etcd_->LeaseRevoke(lease_id_);
}

void Election::KeepAlive() {
  const SteadyClock::time_point sent = SteadyClock::now();
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> r = etcd_->LeaseKeepAlive(lease_id_);
  const auto took = SteadyClock::now() - sent;
  if (!r.ok()) {
    LOG(WARNING) << "election: renewing the lease of " << fence_.key << " failed after "
                 << absl::FormatDuration(absl::FromChrono(took)) << ": " << r.status();
    next_renewal_ = SteadyClock::now() + ToChrono(std::min(ttl_ / 10, absl::Milliseconds(200)));
    return;
  }
  if (r->ttl() <= 0) {
    Lose("the lease expired");
    return;
  }
  if (took > ToChrono(ttl_ / 3)) {
    LOG(WARNING) << "election: renewing the lease of " << fence_.key << " took "
                 << absl::FormatDuration(absl::FromChrono(took));
  }
  valid_until_ = (sent + ToChrono(ttl_ - Margin(ttl_))).time_since_epoch().count();
  next_renewal_ = sent + ToChrono(ttl_ / 3);
}

void Election::Observe() {
  etcdserverpb::RangeRequest r;
  r.set_key(election_prefix_);
  r.set_range_end(ledger::etcd::PrefixEnd(election_prefix_));
  r.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  r.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  absl::StatusOr<etcdserverpb::RangeResponse> q = etcd_->Range(r);
  if (!q.ok()) {
    LOG_EVERY_N(WARNING, 5) << "election: reading " << election_prefix_ << ": " << q.status();
    return;
  }
  bool mine = false;
  for (const etcdserverpb::KeyValue& kv : q->kvs()) {
    mine = mine || (kv.key() == fence_.key && kv.create_revision() == fence_.create_revision);
  }
  if (!mine) {
    Lose("its key is gone");
    return;
  }
  const etcdserverpb::KeyValue& first = q->kvs(0);
  {
    absl::MutexLock l(&mu_);
    leader_ = first.value();
  }
  if (first.key() == fence_.key && !leading_.exchange(true)) {
    LOG(INFO) << "election: " << fence_.key << " leads (" << options_.value << ")";
  }
}

void Election::Renew() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      const auto wait =
          std::chrono::duration_cast<std::chrono::nanoseconds>(next_renewal_ - SteadyClock::now());
      if (wait.count() > 0) {
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::FromChrono(wait));
      }
      if (stopping_ || lost_) return;
    }
    KeepAlive();
  }
}

void Election::Run() {
  std::unique_ptr<ledger::etcd::EtcdWatch> watch;
  SteadyClock::time_point next_look = SteadyClock::now();
  SteadyClock::time_point next_watch = next_look;
  for (;;) {
    bool look = false, restart_watch = false;
    {
      absl::MutexLock l(&mu_);
      if (stopping_ || lost_) break;
      look = changed_ || SteadyClock::now() >= next_look;
      changed_ = false;
      // A watch that cannot start (every member down) is tried again at most 5 times a second.
      restart_watch = watch_ended_ && SteadyClock::now() >= next_watch;
      if (restart_watch) watch_ended_ = false;
    }
    if (look) {
      Observe();
      next_look = SteadyClock::now() + ToChrono(kLookEvery);
    }
    if (restart_watch) {
      next_watch = SteadyClock::now() + std::chrono::milliseconds(200);
      watch.reset();  // outside mu_: its callbacks take it
      etcdserverpb::WatchCreateRequest w;
      w.set_key(election_prefix_);
      w.set_range_end(ledger::etcd::PrefixEnd(election_prefix_));
      // Every change wakes the loop, which reads the queue again.
      absl::StatusOr<std::unique_ptr<ledger::etcd::EtcdWatch>> started = etcd_->Watch(
          w,
          [this](const etcdserverpb::WatchResponse& response) {
            if (response.events_size() == 0 && !response.canceled()) return;
            absl::MutexLock l(&mu_);
            changed_ = true;
          },
          [this](absl::Status) {
            absl::MutexLock l(&mu_);
            watch_ended_ = true;
          });
      if (started.ok()) {
        watch = *std::move(started);
        // Changes between the last read and the watch's start: read once more.
        absl::MutexLock l(&mu_);
        changed_ = true;
      } else {
        absl::MutexLock l(&mu_);
        watch_ended_ = true;
      }
    }
    absl::MutexLock l(&mu_);
    SteadyClock::time_point wake = next_look;
    if (watch_ended_) wake = std::min(wake, next_watch);
    const absl::Duration wait = absl::Nanoseconds(
        std::chrono::duration_cast<std::chrono::nanoseconds>(wake - SteadyClock::now()).count());
    if (wait > absl::ZeroDuration()) {
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](Election* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) {
                                 return e->stopping_ || e->changed_;
                               },
                               this),
                           wait);
    }
  }
  watch.reset();
}

absl::StatusOr<std::string> LeaderOf(ledger::etcd::EtcdClient& etcd, const std::string& prefix) {
  const std::string p = ledger::etcd::Keys(prefix).ElectionPrefix();
  etcdserverpb::RangeRequest r;
  r.set_key(p);
  r.set_range_end(ledger::etcd::PrefixEnd(p));
  r.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  r.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  r.set_limit(1);
  absl::StatusOr<etcdserverpb::RangeResponse> q = etcd.Range(r);
  if (!q.ok()) return q.status();
  return q->kvs_size() == 0 ? std::string() : q->kvs(0).value();
}

}  // namespace autoscale::scheduler
