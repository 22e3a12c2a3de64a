// HaScheduler: one scheduler of an active/standby group whose ledger lives in etcd. Every member
// runs the same thing; the etcd election (election.h) makes one of them the leader:
//   - a standby follows the ledger (ledger::etcd::EtcdFollower: the snapshot and every batch as
//     it lands) and answers every call UNAVAILABLE, naming the leader, so clients go there
//     (rpc::scheduler::NotLeaderError; the gRPC client follows it);
//   - once elected (the leader's lease expired, or it resigned), it catches the followed ledger
//     up to etcd's latest revision, opens a Scheduler on it with an EtcdStore fenced on its own
//     election key, and serves; it runs the maintenance rounds;
//   - a leader answers only while its lease is valid (Election::LeaseValid), and every write it
//     makes is refused by etcd once its key is gone, so a leader that was frozen or cut off past
//     its lease neither writes nor answers when it comes back. It steps down when its lease is
//     lost or its store stopped (fenced off): the Scheduler is dropped (calls in flight fail
//     UNAVAILABLE), and it campaigns again as a standby. While etcd cannot take its writes but
//     the lease holds, it stays the leader and refuses changes (the store retries).
//
// State changes (takeover, step-down, new candidacy) happen only in Step, on the thread that runs
// Run; calls are served from any thread.
//
//   ASSIGN_OR_RETURN(auto ha, HaScheduler::Start({.etcd = {.endpoints = {...}},
//                                                 .prefix = "/autoscale", .advertise = addr}));
//   ASSIGN_OR_RETURN(auto server, rpc::scheduler::StartGrpcServer(ha->service(), listen));
//   ha->Run(absl::Seconds(1), wait_for_signal);
//   server->Shutdown(absl::Seconds(2));
//   ha->Stop();   // a last snapshot if leading, and resign: a standby takes over at once
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/etcd_store.h"
#include "autoscale/ledger/etcd/follower.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "autoscale/scheduler/election.h"
#include "autoscale/scheduler/scheduler.h"

namespace autoscale::scheduler {

struct HaSchedulerOptions {
  SchedulerOptions scheduler{};
  ledger::etcd::EtcdOptions etcd{};
  // The group's keys go under this prefix (ledger::etcd::Keys): several groups can share an etcd.
  std::string prefix = "/autoscale";
  // Where clients reach this scheduler; standbys send clients to the leader's.
  std::string advertise{};
  absl::Duration lease_ttl = absl::Seconds(2);
  // Compact etcd's history after snapshots (ledger::etcd::EtcdStoreOptions::compact).
  bool compact = true;
  // How long failing ledger writes are retried quietly before changes are refused
  // (ledger::etcd::EtcdStoreOptions::refuse_after).
  absl::Duration refuse_after = absl::Seconds(2);
};

class HaScheduler {
 public:
  // Checks the options and connects to etcd (no call yet: the first Step joins the election).
  static absl::StatusOr<std::unique_ptr<HaScheduler>> Start(HaSchedulerOptions options);
  // Steps down if leading (without a snapshot) and resigns.
  ~HaScheduler();
  HaScheduler(const HaScheduler&) = delete;
  HaScheduler& operator=(const HaScheduler&) = delete;

  // The scheduler protocol: the leader's answers, or UNAVAILABLE naming the leader.
  rpc::scheduler::SchedulerService& service() { return router_; }

  // Steps every 20 ms and a maintenance round every `interval` while leading, until `wait` (given
  // how long to wait) returns true.
  void Run(absl::Duration interval, const std::function<bool(absl::Duration)>& wait);
  // One step: a new candidacy when there is none, a takeover once elected, a step-down once the
  // lease is lost or the store stopped; with `maintenance`, a maintenance round when leading.
  void Step(bool maintenance);
  // A clean stop: no more answers, a last snapshot if leading, then resign.
  absl::Status Stop();

  bool leading() const { return active_.load() != nullptr; }
  // The leader's view of a VM (Authz's lookup); on a standby UNAVAILABLE naming the leader.
  absl::StatusOr<ledger::VmInfo> GetVm(const std::string& vm);
  // The leader's address as last seen ("" while none is known); this one's when leading.
  std::string leader() const;
  const std::string& advertise() const { return options_.advertise; }
  // The Prometheus page: role, takeovers, and the leader's scheduler metrics.
  std::string MetricsText() const;

  struct Counters {
    int64_t takeovers = 0;
    int64_t step_downs = 0;
    // How long the last takeover took (catching up, recovering the ledger), and what it read.
    absl::Duration last_takeover{};
    uint64_t last_takeover_records = 0;
  };
  Counters counters() const;

 private:
  // What serves while leading.
  struct Active {
    std::unique_ptr<Scheduler> scheduler;
    ledger::etcd::EtcdStore* store = nullptr;
    Election* election = nullptr;
  };

  // Routes each call to the active scheduler, or answers NotLeader.
  class Router final : public rpc::scheduler::SchedulerService {
   public:
    explicit Router(HaScheduler& ha) : ha_(ha) {}
    absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& r) override;
    void RequestAsync(const api::v1::PermitRequest& r,
                      std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) override;
    absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
        const api::v1::RegisterNodeRequest& r) override;
    absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
        const api::v1::MigrationOrdersRequest& r) override;
    absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
        const api::v1::MigrationResult& r) override;
    absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(const api::v1::PlaceVmRequest& r) override;
    absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(
        const api::v1::ReleaseVmRequest& r) override;
    absl::StatusOr<api::v1::ListNodesResponse> ListNodes(const api::v1::ListRequest& r) override;
    absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest& r) override;
    absl::StatusOr<api::v1::StatusResponse> GetStatus(const api::v1::StatusRequest& r) override;
    absl::StatusOr<api::v1::UpdateNodeResponse> UpdateNode(
        const api::v1::UpdateNodeRequest& r) override;
    absl::StatusOr<api::v1::CordonNodeResponse> CordonNode(
        const api::v1::CordonNodeRequest& r) override;
    absl::StatusOr<api::v1::DrainNodeResponse> DrainNode(
        const api::v1::DrainNodeRequest& r) override;
    absl::StatusOr<api::v1::RemoveNodeResponse> RemoveNode(
        const api::v1::RemoveNodeRequest& r) override;
    absl::StatusOr<api::v1::UpdateVmBoundsResponse> UpdateVmBounds(
        const api::v1::UpdateVmBoundsRequest& r) override;

   private:
    template <typename T, typename F>
    absl::StatusOr<T> Call(F f);
    HaScheduler& ha_;
  };

  // Marks a call in flight and returns the active scheduler if it may answer now (leading, lease
  // valid); null otherwise (then the call is not counted).
  Active* Enter();
  void Exit() { inflight_.fetch_sub(1); }
  // Calls `f` with the active scheduler, if any, whether or not its lease is valid.
  template <typename F>
  void WithActive(F f) {
    inflight_.fetch_add(1);
    if (Active* a = active_.load()) f(*a);
    inflight_.fetch_sub(1);
  }
  absl::Status NotLeader() const;

  HaScheduler(HaSchedulerOptions options, std::shared_ptr<ledger::etcd::EtcdClient> etcd);
  absl::Status Takeover();
  void StepDown(const absl::Status& why);

  const HaSchedulerOptions options_;
  const std::shared_ptr<ledger::etcd::EtcdClient> etcd_;
  const ledger::etcd::Keys keys_;
  Router router_{*this};

  // Owned by the Step thread.
  std::unique_ptr<Election> election_;
  std::unique_ptr<ledger::etcd::EtcdFollower> follower_;
  std::chrono::steady_clock::time_point next_campaign_{};
  std::chrono::steady_clock::time_point next_takeover_{};

  // Set by Step; calls read it between Enter and Exit, and Step waits for inflight_ to reach 0
  // before it destroys what it pointed to.
  std::unique_ptr<Active> owned_active_;
  std::atomic<Active*> active_{nullptr};
  std::atomic<int64_t> inflight_{0};

  mutable absl::Mutex mu_;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  Counters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace autoscale::scheduler
