// Starting and stopping QEMU VMs: a VmSpec (CPUs and memory slots with their bounds, kernel,
// forwarded ports, incoming migration) becomes a QEMU command line; Vm::Start runs it, waits for
// QMP, and Vm stops it through `quit`, reaps it, and kills it as a last resort. A Vm never leaves
// an orphaned or zombie QEMU: its destructor kills and reaps, and QEMU is killed by the kernel if
// this process dies first, unless QEMU dropped root (VmSpec::user): the kernel clears a process's
// death signal when its uid changes, and QEMU 10.0 cannot set it again, so a QEMU that dropped
// root outlives a launcher killed by SIGKILL (a crash; its process group still gets signals).
//
//   VmSpec spec;
//   spec.cpus_max = 4;
//   spec.memory_slot_bytes = 256 << 20;
//   spec.memory_slots_max = 8;
//   spec.kernel = image.kernel;  spec.initrd = image.initrd;  spec.kernel_cmdline = image.cmdline;
//   spec.host_forwards = {{.guest_port = 10301}};
//   ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, Vm::Start(spec));   // paused (-S)
//   RETURN_IF_ERROR(vm->Resume());
//   ASSIGN_OR_RETURN(int port, vm->HostPort(10301));   // 127.0.0.1:port reaches the guest's 10301
//   ...
//   RETURN_IF_ERROR(vm->Stop());
//
// The machine is q35 with one socket of `cpus_max` cores (under TCG: kMaxCpus cores, of which
// the guest is told to use `cpus_max`, because QEMU leaks a TCG context per unplugged vCPU); CPUs
// beyond the first `cpus_min` are separate devices "cpu<core>" that can be unplugged. Memory above
// `memory_slots_min` slots is one virtio-mem device "vm0" on a PCIe root port, sized for
// `memory_slots_max`.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/base/subprocess.h"
#include "neonvm/launcher/host_cgroup.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::launcher {

// The most vCPUs a VM can have (x86 without x2apic); under TCG also the number of vCPUs one QEMU
// process can create in its life (see QemuCommandLine).
inline constexpr int kMaxCpus = 255;

// The user QEMU drops root to unless VmSpec::user names another: a system user of its own
// (scripts/setup creates it), so a guest that escapes the emulator gets no one else's files.
inline constexpr char kQemuUser[] = "autoscale-qemu";

// The id of the virtio-mem device and its memory backend.
inline constexpr char kVirtioMemId[] = "vm0";
inline constexpr char kVirtioMemBackendId[] = "vmem0";

// The fw_cfg entry that hands the guest its VM's agent token (VmSpec::agent_token), and the
// file in the runtime directory QEMU reads it from.
inline constexpr char kAgentTokenFwCfgName[] = "opt/autoscale/agent-token";
inline constexpr char kAgentTokenFile[] = "agent-token";

// A TCP port of the guest reachable from the host on 127.0.0.1 (QEMU's user-mode network, which
// runs with restrict=on: the guest reaches nothing outside).
struct HostForward {
  int guest_port = 0;
  // 0: any free port (see Vm::HostPort).
  int host_port = 0;
};

// A virtio-blk disk: an image file on the host. A migration target opens the same path, so a VM
// with disks migrates only between hosts that share the storage under it.
struct Disk {
  // The image; it must exist when the VM starts.
  std::string path{};
  // "raw" or "qcow2".
  std::string format = "raw";
  bool read_only = false;
  // QEMU's cache mode: "none" (O_DIRECT: the host page cache holds nothing a migration target
  // would miss), "writeback", "writethrough", "directsync" or "unsafe".
  std::string cache = "none";
};

// A network interface on a tap device that joins a bridge the operator made (Vm::Start creates
// the tap, attaches it and hands QEMU the descriptor; the tap goes away with QEMU). Needs
// CAP_NET_ADMIN.
struct TapInterface {
  // The bridge; it must exist in the network namespace the VM starts in.
  std::string bridge{};
  // The tap's name; empty: the kernel picks one (tapN). A name must not be in use.
  std::string tap{};
  // The guest's MAC address ("52:54:00:12:34:56"); empty: one derived from the VM's name and the
  // interface's index, the same on a migration target, so the guest keeps its address.
  std::string mac{};
};

// The host cgroup QEMU runs in (see host_cgroup.h).
struct HostCgroupSpec {
  enum class Mode {
    // Use one where cgroups are writable; otherwise run without (logged once per process).
    kAuto,
    // Use one; Vm::Start fails when it cannot.
    kRequired,
    // None: QEMU runs in this process's cgroups, with no CPU quota or memory cap.
    kOff,
  };
  Mode mode = Mode::kAuto;
  // The parent group, relative to each controller's mount point; the VM's group is
  // "<parent>/<name>.<random>". Starting a VM also removes empty groups there that processes
  // killed before they could clean up left behind (HostCgroup::RemoveOrphans).
  std::string parent = "/neonvm";
  // The memory cap is the VM's largest memory plus this, for QEMU's own needs (its code, the
  // TCG translation buffer, device state).
  int64_t memory_overhead_bytes = int64_t{512} << 20;
};

struct VmSpec {
  // Names the VM in QEMU and in error messages. Letters, digits, '-', '_' and '.'.
  std::string name = "vm";
  std::string qemu = "qemu-system-x86_64";
  // "kvm" or "tcg"; empty: kvm when /dev/kvm is usable, else tcg.
  std::string accel;
  // QEMU's seccomp sandbox (-sandbox on, with obsolete system calls, privilege changes, fork/exec
  // and scheduler/affinity changes denied): a guest that breaks out of the emulator gets a
  // process that cannot exec, spawn or raise its privileges. Hotplug and migration work under it.
  bool sandbox = true;
  // The user QEMU drops to (-run-with user=) when this process is root, once it has opened what
  // it opens at startup (kernel, disks, sockets, taps, log) as root; its runtime directory is
  // that user's, mode 0700. Empty: kQemuUser. "root": no drop, which an operator must ask for
  // (logged as a warning). A process that is not root has nothing to drop: QEMU runs as it, and
  // any other user than "", "root" or its own is an error. Neither has root of a user namespace
  // that does not map the user (Bazel's test sandbox): empty then runs QEMU as this process's
  // user, with a warning, and a named user is an error.
  std::string user;

  // QEMU's -cpu model, which hot-plugged CPUs use too; empty: "host" under KVM, "qemu64" under
  // TCG ("host" needs KVM). Source and target of a migration must use the same model.
  std::string cpu_model;

  // Whole vCPUs: the bounds and how many the VM starts with.
  int cpus_min = 1;
  int cpus_max = 1;
  int cpus_use = 1;
  // The CPU quota at start, in thousandths of a CPU, at most cpus_max * 1000; 0: cpus_use * 1000.
  // A migration target starts with the source's current quota and fewer vCPUs (they are
  // replayed), so this is not tied to cpus_use; the resizer keeps vCPUs = ceil(milli / 1000).
  int cpu_milli = 0;

  // Memory is a whole number of slots; slots above `memory_slots_min` are virtio-mem memory.
  int64_t memory_slot_bytes = int64_t{256} << 20;
  int memory_slots_min = 1;
  int memory_slots_max = 1;
  int memory_slots_use = 1;
  // virtio-mem's block size: a power of two of at least 2 MiB that divides the slot size.
  int64_t virtio_mem_block_bytes = int64_t{8} << 20;

  // The guest. All empty: no guest OS (the firmware runs and finds nothing to boot), which is
  // enough for everything QEMU does on its own.
  std::string kernel;
  std::string initrd;
  std::string kernel_cmdline;
  // Appended to kernel_cmdline, one word each (no whitespace): what an operator adds to an
  // image's command line (the guest's address, say).
  std::vector<std::string> kernel_args;

  // virtio-blk disks, in order (the guest sees vda, vdb, ...).
  std::vector<Disk> disks;

  // Forwarded ports on QEMU's user-mode network (no privileges needed); empty: no user-mode
  // network device.
  std::vector<HostForward> host_forwards;
  // Tap interfaces, after the user-mode one if there is one.
  std::vector<TapInterface> taps;

  // Start as a migration target (-incoming defer) instead of paused.
  bool incoming = false;

  // The VM's agent token (autoscale/rpc/monitor/agent_token.h), a secret; empty: none. Vm::Start
  // writes it to <runtime_dir>/agent-token (0600) and QEMU hands it to the guest through fw_cfg
  // (kAgentTokenFwCfgName): only root reads it, on the host and in the guest, unlike the kernel
  // command line. A migration target gets the same token: the device configs must match.
  std::string agent_token;

  HostCgroupSpec cgroup;

  // Appended to the command line as they are.
  std::vector<std::string> extra_args;
};

// Checks the bounds and the consistency of `spec`; errors name the field.
absl::Status Validate(const VmSpec& spec);

// Whether this process can use KVM (/dev/kvm readable and writable): what an empty
// VmSpec::accel picks.
bool KvmUsable();

// The accelerator `spec` runs with ("kvm" or "tcg") and its CPU model.
std::string ResolvedAccel(const VmSpec& spec);
std::string ResolvedCpuModel(const VmSpec& spec);

// The user QEMU drops root to (see VmSpec::user).
struct RunAs {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Whom QEMU for `spec` runs as when started by a process of effective uid `euid`: nullopt when
// it does not drop (`euid` is not 0, or spec.user is "root"). FailedPrecondition naming the user
// when it does not exist (root) or cannot be switched to (not root).
absl::StatusOr<std::optional<RunAs>> QemuRunAs(const VmSpec& spec, uid_t euid = geteuid());

// The MAC address of `spec.taps[index]` (its own, or the derived one).
std::string TapMac(const VmSpec& spec, size_t index);

// The QEMU command line for `spec` (argv, program first), with its sockets and log in
// `runtime_dir`; `tap_fds[i]` is the open tap of `spec.taps[i]` (Vm::Start makes them);
// `disk_fds[i]` are the open image of `spec.disks[i]` (OpenDisk); QEMU drops root to `run_as`
// (QemuRunAs) when it is not empty. `spec` must be valid.
std::vector<std::string> QemuCommandLine(const VmSpec& spec, const std::string& runtime_dir,
                                         const std::vector<int>& tap_fds = {},
                                         const std::vector<std::vector<int>>& disk_fds = {},
                                         const std::string& run_as = "");

// Opens the image of `disk` for QEMU (fdset `-add-fd`s, /dev/fdset/N): read-write (unless
// read-only) and read-only, with O_DIRECT for the cache modes that use it. A QEMU that dropped
// root opens an image again, by path, whenever its access changes (a migration's switchover makes
// it read-only), which its user may not; from an fdset it takes these descriptors instead.
absl::StatusOr<std::vector<int>> OpenDisk(const Disk& disk);

// A tap device attached to a bridge and up, open for QEMU (OpenTap).
struct OpenedTap {
  int fd = -1;
  std::string name;
};

// Creates tap `name` (empty: the kernel names it) with virtio-net headers, attaches it to
// `bridge` and brings it up. The tap lives as long as a descriptor of it is open.
absl::StatusOr<OpenedTap> OpenTap(const std::string& bridge, const std::string& name);

struct StartOptions {
  // Bounds starting QEMU and connecting to QMP.
  absl::Duration timeout = absl::Seconds(20);
  // Where the QMP and serial sockets and QEMU's log go; made the user's of VmSpec::user, mode
  // 0700. Empty: a new directory under /tmp (unix socket paths must stay under 108 bytes),
  // removed when the Vm is destroyed.
  std::string runtime_dir;
  qmp::QmpClientOptions qmp;
  // A network namespace (/run/netns/NAME) for QEMU and the VM's taps: a "host" of
  // testing::HostsNetwork. Empty: this thread's.
  std::string netns;
};

// A running QEMU process and its QMP connection. Thread-safe.
class Vm {
 public:
  // Starts QEMU for `spec` and connects to QMP. The VM is paused before the first guest
  // instruction (call Resume), or, with `spec.incoming`, waits for migrate-incoming.
  static absl::StatusOr<std::unique_ptr<Vm>> Start(const VmSpec& spec,
                                                   const StartOptions& options = {});

  // Kills QEMU if it still runs, reaps it, and removes the runtime directory if it made it.
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  const VmSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  pid_t pid() const { return qemu_->pid(); }
  qmp::QmpClient& qmp() { return *qmp_; }
  const std::string& runtime_dir() const { return runtime_dir_; }
  // The serial port, a unix socket: the guest's console (neonvm/guest/console.h).
  std::string serial_path() const;
  std::string qmp_path() const;
  // A second QMP socket, for a controller in another process (the agent); the Vm's own client
  // holds the first.
  std::string agent_qmp_path() const;
  // QEMU's stdout and stderr.
  std::string log_path() const;
  // The names of the tap devices of spec().taps, in order.
  const std::vector<std::string>& tap_names() const { return tap_names_; }

  // Starts the guest's CPUs (QMP cont).
  absl::Status Resume();

  // Sets QEMU's CPU quota to `milli` thousandths of a CPU. FailedPrecondition when the VM runs
  // without a host cgroup.
  absl::Status SetCpuLimit(int milli);
  // The CPU quota in milli-CPU; 0 without a host cgroup.
  int cpu_milli() const { return cpu_milli_.load(); }
  // QEMU's host cgroup; null when it runs without one.
  HostCgroup* cgroup() { return cgroup_.get(); }

  // The host port on 127.0.0.1 that reaches `guest_port`; NotFound if it is not forwarded.
  absl::StatusOr<int> HostPort(int guest_port) const;

  // Asks QEMU to quit and waits for it to exit; kills it if it has not exited by `timeout`
  // (DeadlineExceeded then). OK if it had already exited.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(5));

  // Kills QEMU (SIGKILL) and reaps it. Safe to call at any time, from any thread.
  void Kill();

  // Whether QEMU is still running (reaps it if it has exited).
  bool Running();
  // How QEMU ended ("exited with status 1", "killed by signal 9"); empty while it runs.
  std::string ExitDescription();

  // The last `bytes` of QEMU's log, for error messages.
  std::string LogTail(size_t bytes = 2000) const;

 private:
  Vm(VmSpec spec, std::string runtime_dir, bool own_dir, std::unique_ptr<Subprocess> qemu,
     std::unique_ptr<HostCgroup> cgroup);
  // The host cgroup for `spec`: null when it is off, or (kAuto) cannot be made.
  static absl::StatusOr<std::unique_ptr<HostCgroup>> MakeCgroup(const VmSpec& spec);
  // Removes the cgroup once QEMU has been reaped.
  absl::Status RemoveCgroup();
  absl::Status ConnectQmp(const StartOptions& options, absl::Time deadline);
  absl::Status ReadHostPorts();

  const VmSpec spec_;
  const std::string runtime_dir_;
  const bool own_dir_;
  const std::unique_ptr<Subprocess> qemu_;
  // Removed once QEMU has been reaped (Stop, ~Vm).
  const std::unique_ptr<HostCgroup> cgroup_;
  std::atomic<int> cpu_milli_{0};
  std::unique_ptr<qmp::QmpClient> qmp_;
  std::map<int, int> host_ports_;       // guest port -> host port; set by Start.
  std::vector<std::string> tap_names_;  // set by Start
};

}  // namespace autoscale::neonvm::launcher
