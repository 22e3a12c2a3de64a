// Maintenance: what the scheduler does between requests, in rounds (Tick), every balance interval
// in the daemon:
//   - balances: a node above its watermark (not counting VMs already leaving) gets migration
//     orders (Ledger::MigrationOrders), which its agent picks up;
//   - expires migration orders: the place for it is ExpireMigrationOrders; orders do not expire
//     yet (issue 13 adds it);
//   - stops on a failed store: once the ledger's log cannot be written nothing more is granted,
//     and the scheduler exits so that a restart recovers what is durable;
//   - snapshots: after `snapshot_every` records, a snapshot compacts the log.
//
// Rounds are explicit, so tests call Tick and never sleep; Run is the loop the daemon runs.
//
//   Maintenance maintenance(ledger, {.snapshot_every = 100000});
//   absl::Status stopped = maintenance.Run(absl::Seconds(1), [&](absl::Duration interval) {
//     return WaitForSignal(interval);  // true: stop
//   });
//   if (!stopped.ok()) ...  // the store failed
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "autoscale/ledger/ledger.h"

namespace autoscale::scheduler {

struct MaintenanceOptions {
  // Write a snapshot and compact the log once this many records follow the last one. > 0.
  int64_t snapshot_every = 100000;
};

class Maintenance {
 public:
  // `ledger` and `clock` must outlive the Maintenance.
  Maintenance(ledger::Ledger& ledger, MaintenanceOptions options, Clock& clock = Clock::Real());

  // One round. Returns the store's error once the ledger's log failed (the caller stops); OK
  // otherwise, also when balancing a node or writing a snapshot failed (logged; the next round
  // tries again).
  absl::Status Tick();

  // Rounds until `wait` says stop: `wait(interval)` blocks for up to `interval` and returns true
  // to stop (a signal, say); a round follows each false. Returns OK once stopped, or the error
  // of the round that found the store failed.
  absl::Status Run(absl::Duration interval, const std::function<bool(absl::Duration)>& wait);

 private:
  void BalanceNodes();
  // Where migration orders that were not reported in time will be ended as failed (issue 13).
  // Orders do not expire yet: this does nothing.
  void ExpireMigrationOrders(absl::Time now);

  ledger::Ledger& ledger_;
  const MaintenanceOptions options_;
  Clock& clock_;
};

}  // namespace autoscale::scheduler
