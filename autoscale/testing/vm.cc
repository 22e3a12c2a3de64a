#include "autoscale/testing/vm.h"

#include <fstream>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/base/subprocess.h"
#include "autoscale/testing/runfiles.h"

namespace autoscale::testing {

std::string GuestMissing() {
  if (std::string why = QemuMissing(); !why.empty()) return why;
  absl::StatusOr<neonvm::guest::GuestImage> image = neonvm::guest::FindGuestImage();
  return image.ok() ? "" : std::string(image.status().message());
}

std::string PostgresGuestMissing() {
  if (std::string why = QemuMissing(); !why.empty()) return why;
  absl::StatusOr<neonvm::guest::PostgresGuestImage> image = neonvm::guest::FindPostgresGuestImage();
  return image.ok() ? "" : std::string(image.status().message());
}

std::string QemuUserMissing() {
  if (std::string why = RootMissing(); !why.empty()) return "QEMU drops root only when " + why;
  neonvm::launcher::VmSpec spec;
  absl::StatusOr<std::optional<neonvm::launcher::RunAs>> run_as = neonvm::launcher::QemuRunAs(spec);
  if (!run_as.ok()) return std::string(run_as.status().message());
  return run_as->has_value() ? ""
                             : absl::StrCat("user ", neonvm::launcher::kQemuUser,
                                            " is not mapped in this user namespace (Bazel's "
                                            "sandbox: the test needs tags = [\"no-sandbox\"])");
}

std::string ProcStatus(pid_t pid, const std::string& name) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  const std::string prefix = name + ":\t";
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, prefix)) {
      return std::string(absl::StripAsciiWhitespace(line.substr(prefix.size())));
    }
  }
  return "";
}

neonvm::launcher::VmSpec NoGuestSpec(std::string name) {
  neonvm::launcher::VmSpec spec;
  spec.name = std::move(name);
  spec.cpus_min = 1;
  spec.cpus_max = 4;
  spec.cpus_use = 1;
  spec.memory_slot_bytes = int64_t{256} << 20;
  spec.memory_slots_min = 1;
  spec.memory_slots_max = 4;
  spec.memory_slots_use = 1;
  return spec;
}

absl::StatusOr<neonvm::launcher::VmSpec> GuestSpec(std::string name) {
  ASSIGN_OR_RETURN(neonvm::guest::GuestImage image, neonvm::guest::FindGuestImage());
  neonvm::launcher::VmSpec spec = NoGuestSpec(std::move(name));
  spec.kernel = image.kernel;
  spec.initrd = image.initrd;
  spec.kernel_cmdline = image.cmdline;
  spec.host_forwards = {{.guest_port = 7000}};
  return spec;
}

absl::StatusOr<neonvm::launcher::VmSpec> PostgresGuestSpec(std::string name,
                                                           const std::string& dir) {
  ASSIGN_OR_RETURN(neonvm::guest::PostgresGuestImage pg, neonvm::guest::FindPostgresGuestImage());
  // The image is mostly holes: a sparse copy writes what PostgreSQL's files hold.
  const std::string disk = dir + "/pg.img";
  ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> cp,
                   Subprocess::Start({"cp", "--sparse=always", pg.disk, disk}));
  ASSIGN_OR_RETURN(int status, cp->Wait(absl::Seconds(60)));
  if (status != 0) {
    return absl::InternalError(
        absl::StrCat("cp ", pg.disk, " ", disk, ": ", DescribeWaitStatus(status)));
  }
  neonvm::launcher::VmSpec spec = NoGuestSpec(std::move(name));
  spec.memory_slots_use = spec.memory_slots_min = 2;
  spec.kernel = pg.image.kernel;
  spec.initrd = pg.image.initrd;
  spec.kernel_cmdline = pg.image.cmdline;
  // writeback: a test's directory may be on a file system without O_DIRECT (tmpfs).
  spec.disks = {{.path = disk, .cache = "writeback"}};
  spec.host_forwards = {{.guest_port = neonvm::guest::kPostgresPort}};
  return spec;
}

absl::StatusOr<neonvm::guest::GuestImage> GuestWithLoadgen(const std::string& dir) {
  ASSIGN_OR_RETURN(neonvm::guest::GuestImage image, neonvm::guest::FindGuestImage());
  return neonvm::guest::AddFiles(image, {{Runfile("neonvm/guest/loadgen"), "/usr/bin/loadgen"}}, "",
                                 dir + "/initrd");
}

absl::StatusOr<BootedVm> Boot(const neonvm::launcher::VmSpec& spec, absl::Duration timeout) {
  BootedVm b;
  ASSIGN_OR_RETURN(b.vm, neonvm::launcher::Vm::Start(spec));
  ASSIGN_OR_RETURN(b.console, neonvm::guest::GuestConsole::Connect(b.vm->serial_path()));
  RETURN_IF_ERROR(b.vm->Resume());
  absl::Status ready = b.console->WaitFor(neonvm::guest::kReadyMarker, timeout);
  if (!ready.ok()) {
    return Annotate(ready,
                    absl::StrCat("booting ", spec.name, " (QEMU log: ", b.vm->LogTail(500), ")"));
  }
  return b;
}

std::string WaitForGuest(neonvm::guest::GuestConsole& console, const std::string& command,
                         const std::string& want, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    absl::StatusOr<std::string> out = console.Run(command);
    if (!out.ok()) return std::string(out.status().message());
    last = *out;
    if (last == want || absl::Now() >= deadline) return last;
    absl::SleepFor(absl::Milliseconds(100));
  }
}

}  // namespace autoscale::testing
