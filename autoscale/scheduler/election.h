// Election: leader election among schedulers on etcd, the standard recipe. Each candidate holds a
// lease of `lease_ttl` and puts one key, <prefix>/election/<lease id>, bound to that lease, whose
// value is the address clients reach it at. The candidate whose key is the oldest (lowest create
// revision) leads. A candidate keeps its lease alive (a renewal every TTL/3); if it dies, stops,
// or loses touch with etcd, etcd drops the lease and its key with it, and the next oldest
// candidate leads. Standbys watch the election keys, so they learn of it at once.
//
// The leader's key and its create revision are the fence every ledger write is conditional on
// (ledger::etcd::Fence): once the key is gone, etcd refuses the old leader's writes. Answers that
// need no write are guarded by LeaseValid: the lease was renewed less than a TTL ago, measured from
// when the renewal was sent, so etcd cannot have expired it yet. A leader that was frozen (SIGSTOP)
// past its lease finds LeaseValid false the moment it runs again, before any renewal fails.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Election> e,
//                    Election::Start(etcd, {.prefix = "/autoscale", .value = "10.0.0.5:10299"}));
//   while (!e->leading()) ...             // a standby: e->leader() is where clients should go
//   Fence fence = e->fence();             // write the ledger fenced on it
//   if (e->lost()) ...                    // the lease is gone: step down, start a new Election
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/etcd_store.h"

namespace autoscale::scheduler {

struct ElectionOptions {
  // Candidates' keys go under <prefix>/election/.
  std::string prefix{};
  // What this candidate's key holds: the address clients reach it at.
  std::string value{};
  // etcd raises a shorter TTL to its minimum (1.5 election timeouts), in whole seconds.
  absl::Duration lease_ttl = absl::Seconds(2);
  // Called once when the lease is lost (from the election's thread, or from Resign's caller), so
  // that what depends on it stops at once. lost() is already true when it is called.
  std::function<void()> on_lost{};
};

class Election {
 public:
  // Grants the lease and puts the key (the candidate joins the queue), then keeps the lease
  // alive and watches the queue on a thread of its own.
  static absl::StatusOr<std::unique_ptr<Election>> Start(
      std::shared_ptr<ledger::etcd::EtcdClient> etcd, ElectionOptions options);
  // Resigns (Resign) and stops the thread.
  ~Election();
  Election(const Election&) = delete;
  Election& operator=(const Election&) = delete;

  // This candidate leads: its key is the oldest. Stays true until the lease is lost.
  bool leading() const { return leading_.load(); }
  // The lease is gone (expired, revoked, or the key deleted): this candidacy is over.
  bool lost() const { return lost_.load(); }
  // The lease is alive as far as this process can know (see above). Cheap; any thread.
  bool LeaseValid() const;
  // The leader's value (address), "" while none is known.
  std::string leader() const;
  // This candidate's key and its create revision.
  const ledger::etcd::Fence& fence() const { return fence_; }
  int64_t lease_id() const { return lease_id_; }
  absl::Duration granted_ttl() const { return ttl_; }

  // Deletes the key and revokes the lease, so the next candidate leads at once rather than a TTL
  // later (a clean stop). Best effort; the lease expires anyway.
  void Resign();

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;

  Election(std::shared_ptr<ledger::etcd::EtcdClient> etcd, ElectionOptions options);
  // Renewals and watching run on threads of their own, so a slow read of the queue (members
  // electing a leader, a member that hangs) never holds up a renewal.
  void Renew();
  void Run();
  void KeepAlive();
  // Reads the queue: who leads, and whether this candidate's key still exists.
  void Observe();
  void Lose(const std::string& why);

  const std::shared_ptr<ledger::etcd::EtcdClient> etcd_;
  const ElectionOptions options_;
  const std::string election_prefix_;
  int64_t lease_id_ = 0;
  absl::Duration ttl_;
  ledger::etcd::Fence fence_;

  std::atomic<bool> leading_{false};
  std::atomic<bool> lost_{false};
  // steady_clock ticks until which the lease is surely alive.
  std::atomic<int64_t> valid_until_{0};
  // The renewal thread's.
  SteadyTime next_renewal_;

  mutable absl::Mutex mu_;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Something changed under the election prefix since the last look.
  bool changed_ ABSL_GUARDED_BY(mu_) = true;
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = true;
  std::atomic<bool> resigned_{false};
  std::thread renewer_;
  std::thread observer_;
};

// The address of the group's leader as etcd holds it now (the oldest candidate's value under
// `prefix`'s election keys); "" while there is none. For tools and tests outside the group.
absl::StatusOr<std::string> LeaderOf(ledger::etcd::EtcdClient& etcd, const std::string& prefix);

}  // namespace autoscale::scheduler
