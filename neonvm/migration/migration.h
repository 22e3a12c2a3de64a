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
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::migration {

struct MigrationOptions {
  // The longest the guest may be paused for the final copy (QEMU's downtime-limit; its default
  // is 300 ms).
  absl::Duration downtime_limit = absl::Milliseconds(30);
  // Transfer rate cap in bytes per second (QEMU's max-bandwidth; its default, 128 MiB/s, is far
  // below what a local socket carries).
  int64_t max_bandwidth_bytes_per_second = int64_t{10} << 30;
  // Let QEMU slow the guest's vCPUs down when it dirties memory faster than it is sent. Off by
  // default: under TCG it makes precopy lose writes (see above); on KVM it is safe.
  bool auto_converge = false;
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

// What a migration target must have before the state arrives: the vCPUs added to the source as
// devices (their device_add arguments, JSON) and the virtio-mem device's requested size.
struct Devices {
  std::vector<std::string> cpu_device_add_args;
  std::optional<int64_t> virtio_mem_requested_bytes;
};

// Reads the source's devices through its QMP connection (any client: the agent's socket too).
absl::StatusOr<Devices> CaptureDevices(qmp::QmpClient& source, const launcher::VmSpec& spec);

// Starts QEMU from `spec` as an incoming VM (-incoming defer) with `devices` replayed. It may run
// in another process than the source (the target node's agent): only the spec and the devices
// travel.
absl::StatusOr<std::unique_ptr<launcher::Vm>> StartIncoming(launcher::VmSpec spec,
                                                            const Devices& devices);

// StartIncoming for `source`, in this process.
absl::StatusOr<std::unique_ptr<launcher::Vm>> StartTarget(launcher::Vm& source);

// Makes `target` (from StartIncoming) accept the migration; returns the URI the source sends to.
absl::StatusOr<std::string> Listen(launcher::Vm& target, bool allow_postcopy);

// Sends the VM behind `source` (a QMP connection to the source QEMU) to `uri` and follows the
// progress until QEMU reports completion. On success the source is paused for good ("quit" it);
// on failure it runs again (unless a switch to postcopy lost it), and the target should be
// stopped by whoever owns it.
absl::StatusOr<MigrationStats> Send(qmp::QmpClient& source, const std::string& uri,
                                    const MigrationOptions& options = {});

// Waits until `target` has loaded the state and left "inmigrate"; with `expect_running`, it must
// then run.
absl::Status AwaitIncoming(launcher::Vm& target, bool expect_running, absl::Duration timeout);

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
