// The test guest: where neonvm/guest/build put the kernel and the busybox initramfs, and how to
// add our own binaries (the in-VM monitor, the load generator) to a VM's initramfs.
//
//   ASSIGN_OR_RETURN(GuestImage image, FindGuestImage());      // NotFound: run the build script
//   ASSIGN_OR_RETURN(image, AddFiles(image, {{"/path/to/monitor", "/usr/bin/monitor"}},
//                                    "exec /usr/bin/monitor --listen=0.0.0.0:10301\n", dir +
//                                    "/initrd"));
//   spec.kernel = image.kernel;  spec.initrd = image.initrd;  spec.kernel_cmdline = image.cmdline;
//
// The guest's init loads the virtio modules (virtio-mem, virtio-net), brings hot-added CPUs
// online, sets up the user-mode network (the guest is 10.0.2.15; ports forwarded with
// launcher::HostForward arrive there), runs /etc/boot.sh if present, prints kReadyMarker and
// gives a shell on the serial port (console.h).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace autoscale::neonvm::guest {

// What the guest's init prints on the serial port once it is ready for commands.
inline constexpr char kReadyMarker[] = "AUTOSCALE-GUEST-READY";

struct GuestImage {
  std::string kernel;   // vmlinuz
  std::string initrd;   // initramfs
  std::string cmdline;  // the kernel command line the init expects
};

// The directory neonvm/guest/build writes to: $AUTOSCALE_GUEST_DIR if set, else
// ~/.cache/autoscale-guest of the current user.
std::string GuestDir();

// The built guest in GuestDir(); NotFound, naming the missing file and the command that builds
// it, when it is not there.
absl::StatusOr<GuestImage> FindGuestImage();

// The PostgreSQL guest of `neonvm/guest/build --postgres`: the kernel, an initramfs whose boot
// script mounts the data disk and starts PostgreSQL 15 on port 5432 (see the build script), and
// the disk image every VM copies (it writes to its disk).
struct PostgresGuestImage {
  GuestImage image;
  std::string disk;  // pg.img, raw ext4
};

// The PostgreSQL port in the guest.
inline constexpr int kPostgresPort = 5432;

// The built PostgreSQL guest in GuestDir(); NotFound, naming the missing file and the command
// that builds it, when it is not there.
absl::StatusOr<PostgresGuestImage> FindPostgresGuestImage();

// A file to put into the guest.
struct GuestFile {
  std::string host_path;
  // Absolute path in the guest, e.g. "/usr/bin/loadgen".
  std::string guest_path;
};

// Writes to `initrd_path` the initramfs of `base` followed by a second archive (the kernel
// unpacks both, later files winning) holding `files`, each with the shared libraries `ldd` finds
// for it at the same paths as on the host, and, when not empty, `boot_script` as /etc/boot.sh,
// which the guest's init runs in the background at boot (its output goes to /var/log/boot.log).
// Returns `base` with its initrd replaced.
absl::StatusOr<GuestImage> AddFiles(const GuestImage& base, const std::vector<GuestFile>& files,
                                    std::string_view boot_script, const std::string& initrd_path);

}  // namespace autoscale::neonvm::guest
