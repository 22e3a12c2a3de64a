#include "autoscale/scheduler/maintenance.h"

#include <optional>
#include <vector>

#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::scheduler {

Maintenance::Maintenance(ledger::Ledger& ledger, MaintenanceOptions options, Clock& clock)
    : ledger_(ledger), options_(options), clock_(clock) {}

absl::Status Maintenance::Tick() {
  BalanceNodes();
  ExpireMigrationOrders(clock_.Now());
  const std::optional<ledger::StoreStats> stats = ledger_.store_stats();
  if (!stats.has_value()) return absl::OkStatus();  // a ledger in memory only
  if (!stats->error.ok()) {
    return Annotate(stats->error, "the ledger's log failed");
  }
  if (stats->records_since_snapshot >= static_cast<uint64_t>(options_.snapshot_every)) {
    if (absl::Status s = ledger_.Snapshot(); !s.ok()) LOG(ERROR) << "snapshot: " << s;
  }
  return absl::OkStatus();
}

absl::Status Maintenance::Run(absl::Duration interval,
                              const std::function<bool(absl::Duration)>& wait) {
  while (!wait(interval)) {
    RETURN_IF_ERROR(Tick());
  }
  return absl::OkStatus();
}

void Maintenance::BalanceNodes() {
  for (const ledger::NodeInfo& n : ledger_.ListNodes()) {
    // VMs already leaving will take their share away; only what stays counts.
    if (!(n.reserved - n.migrating).AnyGreaterThan(n.watermark)) continue;
    absl::StatusOr<std::vector<ledger::MigrationOrder>> orders = ledger_.MigrationOrders(n.name);
    if (!orders.ok()) LOG(WARNING) << "balancing node " << n.name << ": " << orders.status();
  }
}

void Maintenance::ExpireMigrationOrders(absl::Time) {}

}  // namespace autoscale::scheduler
