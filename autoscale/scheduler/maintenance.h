// Maintenance: what the scheduler does between requests, in rounds (Tick), every balance interval
// in the daemon:
//   - balances: a node above its watermark (not counting VMs already leaving) gets migration
//     orders, and a draining node gets orders for every migratable VM still on it
//     (Ledger::MigrationOrders), which the source agents pick up;
//   - expires migration orders: an order not reported within `migration_timeout` (the
//     reference gives a migration an hour) is ended as failed, which releases its target's
//     reservation and lets the VM be resized again (ExpireMigrationOrders);
//   - snapshots: after `snapshot_every` records a snapshot compacts the log; a failed one is
//     tried again after a back-off (doubling up to `snapshot_backoff_max`), not every round,
//     since it stops every node while it copies the ledger.
// A store that cannot write is not a reason to stop: the store retries on its own, the ledger
// refuses changes meanwhile (UNAVAILABLE) and answers reads, and a restart would find the same
// disk. Rounds go on.
//
// Rounds are explicit, so tests call Tick and never sleep; Run is the loop the daemon runs.
//
//   Maintenance maintenance(ledger, {.snapshot_every = 100000});
//   maintenance.Run(absl::Seconds(1), [&](absl::Duration interval) {
//     return WaitForSignal(interval);  // true: stop
//   });
#pragma once

#include <cstdint>
#include <functional>

#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "autoscale/ledger/ledger.h"

namespace autoscale::scheduler {

struct MaintenanceOptions {
  // Write a snapshot and compact the log once this many records follow the last one. > 0.
  int64_t snapshot_every = 100000;
  // A migration order not reported within this long is ended as failed. > 0.
  absl::Duration migration_timeout = absl::Hours(1);
  // After a failed snapshot the next is tried after 1 s, then twice as long each time, up to
  // this.
  absl::Duration snapshot_backoff_max = absl::Minutes(5);
};

class Maintenance {
 public:
  // `ledger` and `clock` must outlive the Maintenance.
  Maintenance(ledger::Ledger& ledger, MaintenanceOptions options, Clock& clock = Clock::Real());

  // One round. What fails in it (balancing a node, a snapshot, the store) is logged and tried
  // again in a later round.
  void Tick();

  // Rounds until `wait` says stop: `wait(interval)` blocks for up to `interval` and returns true
  // to stop (a signal, say); a round follows each false.
  void Run(absl::Duration interval, const std::function<bool(absl::Duration)>& wait);

  // Snapshots that failed since the start.
  uint64_t failed_snapshots() const { return failed_snapshots_; }

 private:
  void BalanceNodes();
  void ExpireMigrationOrders(absl::Time now);
  void MaybeSnapshot(absl::Time now);

  ledger::Ledger& ledger_;
  const MaintenanceOptions options_;
  Clock& clock_;
  // Snapshot back-off: no attempt before `next_snapshot_`.
  absl::Duration snapshot_backoff_ = absl::ZeroDuration();
  absl::Time next_snapshot_ = absl::InfinitePast();
  uint64_t failed_snapshots_ = 0;
  // The store's error last round, to log a change once.
  bool store_failed_ = false;
};

}  // namespace autoscale::scheduler
