// EtcdFollower: a standby scheduler's warm copy of the ledger in etcd. It reads the snapshot and
// the records after it, then watches the ledger's keys and adds each batch the leader writes (and
// each new snapshot) as it lands, so a takeover reads only what the last moments added
// (EtcdStore::Open with Current()).
//
// It never gives up: a failed read, a watch that ends (a member died or lost quorum), a watch
// that fell behind etcd's compaction, or a batch that does not follow the last one all lead to
// reading everything again, after a short pause. status() says what went wrong last.
//
//   std::unique_ptr<EtcdFollower> follower = EtcdFollower::Start(etcd, Keys("/autoscale"));
//   ...                               // once elected:
//   ASSIGN_OR_RETURN(auto store, EtcdStore::Open({...}, follower->Current()));
#pragma once

#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/layout.h"

namespace autoscale::ledger::etcd {

class EtcdFollower {
 public:
  static std::unique_ptr<EtcdFollower> Start(std::shared_ptr<EtcdClient> etcd, Keys keys);
  // Stops watching.
  ~EtcdFollower();
  EtcdFollower(const EtcdFollower&) = delete;
  EtcdFollower& operator=(const EtcdFollower&) = delete;

  // The ledger as followed so far; empty until the first read succeeded.
  std::optional<EtcdLedger> Current() const;
  // The revision followed up to (0 before the first read).
  int64_t revision() const;
  // OK while following; the last error while it reads again.
  absl::Status status() const;
  // How many times it read everything (the first read included).
  int reads() const;

 private:
  EtcdFollower(std::shared_ptr<EtcdClient> etcd, Keys keys);
  void Run();
  // Applies one watch response; false when the ledger must be read again.
  bool OnResponse(const etcdserverpb::WatchResponse& response);

  const std::shared_ptr<EtcdClient> etcd_;
  const Keys keys_;

  mutable absl::Mutex mu_;
  // The ledger followed, and whether it must be read again.
  std::optional<EtcdLedger> ledger_ ABSL_GUARDED_BY(mu_);
  bool stale_ ABSL_GUARDED_BY(mu_) = true;
  // The watch ended (or must end).
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  int reads_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace autoscale::ledger::etcd
