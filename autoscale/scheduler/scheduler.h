// Scheduler: the scheduler of a cluster as one object: a ledger recovered from its store, the
// answers to the scheduler protocol (RequestHandler), the maintenance rounds (Maintenance) and
// the metrics page. A daemon adds a transport, signals and an HTTP listener
// (examples/scheduler); the simulator and tests call service() in process.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ledger::FileStore> store, ledger::FileStore::Open({.dir =
//   d})); ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler,
//                    Scheduler::Open({.default_compute_unit = {250, 1 << 30}}, std::move(store)));
//   ASSIGN_OR_RETURN(auto server, rpc::scheduler::StartGrpcServer(scheduler->service(), addr));
//   scheduler->Run(absl::Seconds(1), wait_for_signal);
//   server->Shutdown(absl::Seconds(2));
//   RETURN_IF_ERROR(scheduler->Snapshot());  // a clean stop
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/store.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "autoscale/scheduler/maintenance.h"
#include "autoscale/scheduler/request_handler.h"

namespace autoscale::scheduler {

struct SchedulerOptions {
  // The compute unit of placements that name none. Both resources > 0.
  core::Resources default_compute_unit{250, int64_t{1} << 30};
  // The ledger's: the watermark of nodes that register without one (in (0, 1]), the migration
  // policy, placement, the recovery grace, and the clock (null: the real one), which maintenance
  // uses too.
  ledger::LedgerOptions ledger{};
  MaintenanceOptions maintenance{};
};

// Checks the options; errors name the option and the value.
absl::Status ValidateOptions(const SchedulerOptions& options);

class Scheduler {
 public:
  // Checks the options and recovers the ledger from `store` (the error names what is damaged).
  static absl::StatusOr<std::unique_ptr<Scheduler>> Open(
      SchedulerOptions options, std::unique_ptr<ledger::LedgerStore> store);

  // The scheduler protocol's answers: serve them (rpc::scheduler::StartGrpcServer) or call them
  // in process (rpc::scheduler::InProcessClient).
  rpc::scheduler::SchedulerService& service() { return handler_; }
  const ledger::Ledger& ledger() const { return *ledger_; }
  // The Prometheus text page (metrics.h).
  std::string MetricsText() const;

  // One maintenance round (Maintenance::Tick).
  void Tick() { maintenance_.Tick(); }
  // Maintenance rounds every `interval` until `wait` says stop (Maintenance::Run).
  void Run(absl::Duration interval, const std::function<bool(absl::Duration)>& wait) {
    maintenance_.Run(interval, wait);
  }
  const Maintenance& maintenance() const { return maintenance_; }
  // A snapshot of the whole ledger: the last thing a clean stop does, once no call comes in, so
  // the next start replays nothing.
  absl::Status Snapshot() { return ledger_->Snapshot(); }

 private:
  Scheduler(const SchedulerOptions& options, std::unique_ptr<ledger::Ledger> ledger);

  const std::unique_ptr<ledger::Ledger> ledger_;
  RequestHandler handler_;
  Maintenance maintenance_;
};

}  // namespace autoscale::scheduler
