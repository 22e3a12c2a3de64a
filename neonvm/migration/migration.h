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
#include "neonvm/migration/outgoing.h"
#include "neonvm/migration/source.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::migration {

// Reads the source's devices through its QMP connection (any client: the agent's socket too).
absl::StatusOr<Devices> CaptureDevices(qmp::QmpClient& source, const launcher::VmSpec& spec);

// Starts QEMU from `spec` as an incoming VM (-incoming defer) with `devices` replayed. It may run
// in another process than the source (the target node's agent): only the spec and the devices
// travel. Its host cgroup (spec.cgroup) is made before QEMU starts, with the quota
// spec.cpu_milli: set it to the source's current milli-CPU.
absl::StatusOr<std::unique_ptr<launcher::Vm>> StartIncoming(
    launcher::VmSpec spec, const Devices& devices, const launcher::StartOptions& options = {});

// StartIncoming for `source`, in this process (`options.netns`: on another "host"), with the
// source's current CPU quota.
absl::StatusOr<std::unique_ptr<launcher::Vm>> StartTarget(
    launcher::Vm& source, const launcher::StartOptions& options = {});

// QEMU's TLS on the stream, the target's side.
struct IncomingTls {
  // Its tls-creds-x509 files (MakeTlsDir); empty: plaintext.
  std::string dir;
  // The distinguished name the source's certificate must have ("CN=node-a"); empty: any the CA
  // signed.
  std::string source_dn;
};

// Makes `target` (from StartIncoming) accept the migration; returns the URI the source sends to:
// a unix socket, or with `tcp_address` "tcp:<address>:<port>" on a port QEMU picked. With
// `tls.dir` the stream must be TLS: the source presents a certificate of the CA (of
// `tls.source_dn`).
absl::StatusOr<std::string> Listen(launcher::Vm& target, bool allow_postcopy,
                                   const std::string& tcp_address = "",
                                   const IncomingTls& tls = {});

// OK when `uri` is a migration address of the kind Listen gives: "unix:" and an absolute path,
// or "tcp:HOST:PORT". QEMU's migrate also takes "exec:" (a shell command run on the source host),
// "file:", "fd:" and more; the address comes from the target's agent, a peer, so a source never
// sends to anything else. InvalidArgument naming the address otherwise.
absl::Status CheckTargetUri(std::string_view uri);

// Makes `dir` (mode 0700) a directory of QEMU tls-creds-x509 files for a node whose certificate,
// key and CA are `cert`, `key` and `ca` (PEM): links to them under QEMU's names, so that one
// certificate serves both ends (it must allow serverAuth and clientAuth, or name no purpose) and
// a rotated file is read by the next migration. Each migration (Listen, and a source's Configure)
// makes QEMU's credentials afresh from copies of these files that QEMU's user may read (under
// /tmp, removed once loaded): the files themselves may stay root's.
absl::Status MakeTlsDir(const std::string& dir, const std::string& cert, const std::string& key,
                        const std::string& ca);

// Waits until `target` has loaded the state and left "inmigrate" to run (or, without
// `expect_running`, to stay paused as the source was).
absl::Status AwaitIncoming(launcher::Vm& target, bool expect_running, absl::Duration timeout);

// Migrates `source` into `target` (from StartTarget) through RunMigration (outgoing.h). On
// success `source` has been stopped and reaped, and `target` runs (or stays paused, if `source`
// was paused). On a failure before the point of no return (QEMU reports it, or the timeout
// passes and the migration is cancelled) `target` is stopped and `source` keeps running (if it
// ran); after it, the VM is lost and the error says so.
absl::StatusOr<MigrationStats> Migrate(launcher::Vm& source, launcher::Vm& target,
                                       const MigrationOptions& options = {});

struct Migrated {
  std::unique_ptr<launcher::Vm> vm;  // the target, now running the VM
  MigrationStats stats;
};

// StartTarget and Migrate.
absl::StatusOr<Migrated> LiveMigrate(launcher::Vm& source, const MigrationOptions& options = {});

// Has `vm` announce its network interfaces (RARP and the guest's gratuitous ARP, five rounds over
// ~1.5 s), so the bridges of a segment learn where its MAC is now. QEMU does this after an
// incoming migration too, unless told not to; the call makes it explicit and repeatable.
absl::Status AnnounceSelf(launcher::Vm& vm);

}  // namespace autoscale::neonvm::migration
