#include "autoscale/scheduler/scheduler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/scheduler/metrics.h"

namespace autoscale::scheduler {

absl::Status ValidateOptions(const SchedulerOptions& options) {
  const core::Resources& cu = options.default_compute_unit;
  if (cu.milli_cpu <= 0 || cu.memory_bytes <= 0 || cu.milli_cpu > ledger::kMaxAmount ||
      cu.memory_bytes > ledger::kMaxAmount) {
    return absl::InvalidArgumentError(
        absl::StrCat("default compute unit must be > 0 in both resources and at most ",
                     ledger::kMaxAmount, " (1 PiB), got ", cu.ToString()));
  }
  const double watermark = options.ledger.default_watermark;
  if (!(watermark > 0 && watermark <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("default watermark must be in (0, 1], got ", watermark));
  }
  if (options.maintenance.snapshot_every <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot_every must be > 0, got ", options.maintenance.snapshot_every));
  }
  if (options.maintenance.migration_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("migration_timeout must be > 0, got ",
                     absl::FormatDuration(options.maintenance.migration_timeout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Open(
    SchedulerOptions options, std::unique_ptr<ledger::LedgerStore> store) {
  RETURN_IF_ERROR(ValidateOptions(options));
  ASSIGN_OR_RETURN(std::unique_ptr<ledger::Ledger> ledger,
                   ledger::Ledger::Open(options.ledger, std::move(store)));
  return std::unique_ptr<Scheduler>(new Scheduler(options, std::move(ledger)));
}

Scheduler::Scheduler(const SchedulerOptions& options, std::unique_ptr<ledger::Ledger> ledger)
    : ledger_(std::move(ledger)),
      handler_(*ledger_, options.default_compute_unit),
      maintenance_(*ledger_, options.maintenance,
                   options.ledger.clock != nullptr ? *options.ledger.clock : Clock::Real()) {}

std::string Scheduler::MetricsText() const {
  return RenderMetrics(*ledger_, handler_, &maintenance_);
}

}  // namespace autoscale::scheduler
