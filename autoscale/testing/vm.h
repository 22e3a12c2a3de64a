// Test VMs for the neonvm libraries and others: specs for VMs with and without the test guest,
// booting it, waiting for it, and skipping when it is missing.
//
//   TEST(Hotplug, AddsCpu) {
//     AUTOSCALE_REQUIRE_GUEST();
//     absl::StatusOr<BootedVm> booted = Boot(*GuestSpec("t1"));
//     ASSERT_TRUE(booted.ok()) << booted.status();
//     EXPECT_EQ(*booted->console->Run("nproc"), "1");
//   }
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/testing/skip.h"
#include "neonvm/guest/console.h"
#include "neonvm/guest/image.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::testing {

// Empty when QEMU and the test guest are there; otherwise what is missing.
std::string GuestMissing();

#define AUTOSCALE_REQUIRE_GUEST() AUTOSCALE_REQUIRE(::autoscale::testing::GuestMissing())

// Empty when QEMU and the PostgreSQL guest (neonvm/guest/build --postgres) are there.
std::string PostgresGuestMissing();

#define AUTOSCALE_REQUIRE_POSTGRES_GUEST() \
  AUTOSCALE_REQUIRE(::autoscale::testing::PostgresGuestMissing())

// Empty when a QEMU started here drops root to launcher::kQemuUser (this process is root and
// scripts/setup made the user); otherwise what is missing.
std::string QemuUserMissing();

#define AUTOSCALE_REQUIRE_QEMU_USER() AUTOSCALE_REQUIRE(::autoscale::testing::QemuUserMissing())

// Field `name` of /proc/`pid`/status ("Uid" gives "999\t999\t999\t999": real, effective, saved
// and filesystem uid); empty when the process or the field is not there.
std::string ProcStatus(pid_t pid, const std::string& name);

// A VM without a guest OS: 1 of up to 4 CPUs, 1 of up to 4 slots of 256 MiB.
neonvm::launcher::VmSpec NoGuestSpec(std::string name);

// The same shape with the test guest's kernel, initramfs and command line, and the guest's port
// 7000 forwarded.
absl::StatusOr<neonvm::launcher::VmSpec> GuestSpec(std::string name);

// The PostgreSQL guest: NoGuestSpec's CPUs, 512 MiB at start (2 slots), its own copy of the
// data disk in `dir` (sparse), and the guest's PostgreSQL port forwarded to 127.0.0.1.
absl::StatusOr<neonvm::launcher::VmSpec> PostgresGuestSpec(std::string name,
                                                           const std::string& dir);

// The test guest with the load generator at /usr/bin/loadgen, its initramfs written to `dir`.
absl::StatusOr<neonvm::guest::GuestImage> GuestWithLoadgen(const std::string& dir);

struct BootedVm {
  std::unique_ptr<neonvm::launcher::Vm> vm;
  std::unique_ptr<neonvm::guest::GuestConsole> console;
};

// Starts `spec` (with a kernel), connects the console, resumes, and waits until the guest's
// shell is ready.
absl::StatusOr<BootedVm> Boot(const neonvm::launcher::VmSpec& spec,
                              absl::Duration timeout = absl::Seconds(90));

// Runs `command` in the guest until it prints `want` or `timeout` passes (the guest catches up
// with a hotplug asynchronously); returns the last output, or the console's error.
std::string WaitForGuest(neonvm::guest::GuestConsole& console, const std::string& command,
                         const std::string& want, absl::Duration timeout = absl::Seconds(15));

// The shell command that prints MemTotal of /proc/meminfo in KiB.
inline constexpr char kMemTotalKibCommand[] =
    "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo";

}  // namespace autoscale::testing
