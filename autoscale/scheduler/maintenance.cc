#include "autoscale/scheduler/maintenance.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "glog/logging.h"

namespace autoscale::scheduler {

Maintenance::Maintenance(ledger::Ledger& ledger, MaintenanceOptions options, Clock& clock)
    : ledger_(ledger), options_(options), clock_(clock) {}

void Maintenance::Tick() {
  const absl::Time now = clock_.Now();
  const std::optional<ledger::StoreStats> stats = ledger_.store_stats();
  const bool failed = stats.has_value() && !stats->error.ok();
  if (failed != store_failed_) {
    if (failed) {
      LOG(ERROR) << "the ledger's log cannot be written; nothing changes until it can: "
                 << stats->error;
    } else {
      LOG(WARNING) << "the ledger's log is written again";
    }
    store_failed_ = failed;
  }
  if (failed) return;  // every change would be refused
  // Expired orders first: their VMs can be ordered afresh in the same round.
  ExpireMigrationOrders(now);
  BalanceNodes();
  MaybeSnapshot(now);
}

void Maintenance::Run(absl::Duration interval, const std::function<bool(absl::Duration)>& wait) {
  while (!wait(interval)) Tick();
}

void Maintenance::BalanceNodes() {
  for (const ledger::NodeInfo& n : ledger_.ListNodes()) {
    // VMs already leaving will take their share away; only what stays counts.
    if (!n.draining && !(n.reserved - n.migrating).AnyGreaterThan(n.watermark)) continue;
    absl::StatusOr<std::vector<ledger::MigrationOrder>> orders = ledger_.MigrationOrders(n.name);
    if (!orders.ok()) LOG(WARNING) << "balancing node " << n.name << ": " << orders.status();
  }
}

void Maintenance::ExpireMigrationOrders(absl::Time now) {
  absl::StatusOr<std::vector<ledger::MigrationOrder>> ended =
      ledger_.ExpireMigrations(now - options_.migration_timeout);
  if (!ended.ok()) LOG(WARNING) << "expiring migration orders: " << ended.status();
}

void Maintenance::MaybeSnapshot(absl::Time now) {
  const std::optional<ledger::StoreStats> stats = ledger_.store_stats();
  if (!stats.has_value()) return;  // a ledger in memory only
  if (stats->records_since_snapshot < static_cast<uint64_t>(options_.snapshot_every)) return;
  if (now < next_snapshot_) return;
  if (absl::Status s = ledger_.Snapshot(); !s.ok()) {
    ++failed_snapshots_;
    snapshot_backoff_ = std::clamp(snapshot_backoff_ * 2, absl::Seconds(1),
                                   std::max(absl::Seconds(1), options_.snapshot_backoff_max));
    next_snapshot_ = now + snapshot_backoff_;
    LOG(ERROR) << "snapshot: " << s << "; next try in " << snapshot_backoff_;
    return;
  }
  snapshot_backoff_ = absl::ZeroDuration();
  next_snapshot_ = absl::InfinitePast();
}

}  // namespace autoscale::scheduler
