// Live migration between two QEMU processes on this host: a target started from the source's
// spec (-incoming defer) with the CPUs and memory the source has now, QEMU's precopy (optionally
// switching to postcopy when precopy does not converge), progress followed until the end. On
// success the source is stopped and the target runs the VM; on failure the target is stopped and
// the source keeps running.
//
//   ASSIGN_OR_RETURN(Migrated m, LiveMigrate(*vm, {.downtime_limit = absl::Milliseconds(30)}));
//   vm = std::move(m.vm);     // the old Vm has exited
//   LOG(INFO) << absl::FormatDuration(m.stats.downtime);
//
// The target gets new sockets and new host ports (see launcher::Vm::HostPort).
//
// Under TCG (no KVM), QEMU 10.0.2's precopy occasionally loses a write of a guest that keeps
// writing memory during the migration (migration_guest_test measured a wrong word in 1 of 6 runs
// without auto-converge, 5 of 6 with it); postcopy (allow_postcopy) came through every run. KVM
// tracks dirty pages in hardware and is not affected.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::neonvm::migration {

struct MigrationOptions {
  // The longest the guest may be paused for the final copy (QEMU's downtime-limit; its default
  // is 300 ms).
  absl::Duration downtime_limit = absl::Milliseconds(30);
  // Transfer rate cap in bytes per second (QEMU's max-bandwidth; its default, 128 MiB/s, is far
  // below what a local socket carries).
  int64_t max_bandwidth_bytes_per_second = int64_t{10} << 30;
  // Let QEMU slow the guest's vCPUs down when it dirties memory faster than it is sent.
  bool auto_converge = true;
  // Switch to postcopy once precopy has made `postcopy_after_passes` passes over memory without
  // finishing. After the switch a failure loses the VM: neither side can resume it.
  bool allow_postcopy = false;
  int postcopy_after_passes = 4;
  // Bounds the whole migration; when it runs out the migration is cancelled.
  absl::Duration timeout = absl::Seconds(60);
  // How often progress is polled (query-migrate).
  absl::Duration poll_interval = absl::Milliseconds(10);
};

// What QEMU reports about a completed migration.
struct MigrationStats {
  // From `migrate` to completion, and how long the guest was paused.
  absl::Duration total_time;
  absl::Duration downtime;
  absl::Duration setup_time;
  // Guest RAM sent (including pages sent more than once) and the guest's RAM size.
  int64_t transferred_bytes = 0;
  int64_t ram_bytes = 0;
  // Passes over dirty memory (QEMU's dirty-sync-count).
  int64_t passes = 0;
  bool postcopy = false;
};

// Starts a migration target for `source`: QEMU from the same spec as an incoming VM, with the
// vCPUs plugged into `source` and its virtio-mem requested size replayed, waiting for Migrate.
absl::StatusOr<std::unique_ptr<launcher::Vm>> StartTarget(launcher::Vm& source);

// Migrates `source` into `target` (from StartTarget). On success `source` has been stopped and
// reaped, and `target` runs (or stays paused, if `source` was paused). On failure (QEMU reports
// it, or the timeout passes and the migration is cancelled) `target` is stopped and `source`
// keeps running; the error says what happened.
absl::StatusOr<MigrationStats> Migrate(launcher::Vm& source, launcher::Vm& target,
                                       const MigrationOptions& options = {});

struct Migrated {
  std::unique_ptr<launcher::Vm> vm;  // the target, now running the VM
  MigrationStats stats;
};

// StartTarget and Migrate.
absl::StatusOr<Migrated> LiveMigrate(launcher::Vm& source, const MigrationOptions& options = {});

}  // namespace autoscale::neonvm::migration
