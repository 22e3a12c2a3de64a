// The source QEMU of a live migration, as the migration drives it: a small interface over the QMP
// commands a migration sends to its source, so that the decisions of a migration (when to switch
// to postcopy, when to cancel, what to resume) run unchanged against a fake in tests that have
// no QEMU (autoscale/testing/fake_vm.h).
//
//   std::unique_ptr<Source> source = NewQmpSource(vm->qmp(), vm->spec());
//   ASSIGN_OR_RETURN(Devices devices, source->CaptureDevices());   // for the target
//   ... start the target, make it listen ...
//   MigrationResult r = RunMigration(*source, target, options);  // outgoing.h
//
// Every call is bounded by its timeout and names the VM in its errors.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
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
  // default: under TCG it makes precopy lose writes (migration.h); on KVM it is safe.
  bool auto_converge = false;
  // Switch to postcopy once precopy has made `postcopy_after_passes` passes over memory without
  // finishing. After the switch a failure loses the VM: neither side can resume it.
  bool allow_postcopy = false;
  int postcopy_after_passes = 4;
  // Bounds the whole migration; when it runs out the migration is cancelled.
  absl::Duration timeout = absl::Seconds(60);
  // How often progress is polled (query-migrate).
  absl::Duration poll_interval = absl::Milliseconds(10);
  // Migrate over TCP to the target listening on this address of its host (a free port), instead
  // of a unix socket: for a target on another host. Empty: a unix socket (same host).
  std::string listen_address;
  // QEMU's TLS on the stream (the source's side): a directory of its tls-creds-x509 files
  // (MakeTlsDir, migration.h), and the name the target's certificate must carry (its CN or a DNS
  // SAN). Read afresh by each migration, so a rotated certificate is used by the next one. Empty
  // `tls_dir`: plaintext (and TLS left on from an earlier migration is turned off).
  std::string tls_dir;
  std::string tls_hostname;
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

// One answer of query-migrate.
struct Progress {
  // QEMU's MigrationStatus: "none", "setup", "active", "postcopy-active", "postcopy-paused",
  // "device", "completed", "failed", "cancelling", "cancelled", ...
  std::string status;
  // QEMU's error-desc, when it failed.
  std::string error;
  // Passes over dirty memory so far, and bytes still to send.
  int64_t passes = 0;
  int64_t remaining_bytes = 0;
  // Filled in once `status` is "completed" (postcopy is the caller's to set).
  MigrationStats stats;
};

class Source {
 public:
  virtual ~Source() = default;

  // Names the VM in errors ("VM vm1 (unix:/run/vm1/agent.qmp)").
  virtual std::string name() const = 0;
  // QEMU's run state (query-status): "running", "paused", "postmigrate", "finish-migrate", ...
  virtual absl::StatusOr<std::string> RunState(absl::Duration timeout) = 0;
  // Whether the VM runs under KVM (query-kvm); false: TCG.
  virtual absl::StatusOr<bool> KvmEnabled(absl::Duration timeout) = 0;
  // The devices a target must replay.
  virtual absl::StatusOr<Devices> CaptureDevices(absl::Duration timeout) = 0;
  // Capabilities and parameters for a migration with `options` (migrate-set-capabilities,
  // migrate-set-parameters).
  virtual absl::Status Configure(const MigrationOptions& options, absl::Duration timeout) = 0;
  // Starts sending to `uri` (migrate).
  virtual absl::Status Start(const std::string& uri, absl::Duration timeout) = 0;
  // Where the migration is (query-migrate).
  virtual absl::StatusOr<Progress> Query(absl::Duration timeout) = 0;
  // migrate-start-postcopy.
  virtual absl::Status StartPostcopy(absl::Duration timeout) = 0;
  // migrate_cancel.
  virtual absl::Status Cancel(absl::Duration timeout) = 0;
  // Runs the guest's vCPUs again (cont).
  virtual absl::Status Resume(absl::Duration timeout) = 0;
  // Ends the source QEMU (quit); its owner reaps it.
  virtual absl::Status Quit(absl::Duration timeout) = 0;
};

// A Source over `qmp`, a QMP connection to a QEMU started from `spec` (any client: the agent's
// socket too). `qmp` must outlive it.
std::unique_ptr<Source> NewQmpSource(qmp::QmpClient& qmp, const launcher::VmSpec& spec);

}  // namespace autoscale::neonvm::migration
