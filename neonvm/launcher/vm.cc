#include "neonvm/launcher/vm.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <pwd.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/owned_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/base/units.h"
#include "glog/logging.h"

namespace autoscale::neonvm::launcher {
namespace {

constexpr size_t kMaxUnixPath = 107;  // sizeof(sockaddr_un::sun_path) - 1

std::string ErrnoText(int err) { return std::strerror(err); }

bool IsPowerOfTwo(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// Parses "info usernet": "  TCP[HOST_FORWARD]  8  127.0.0.1 45121  10.0.2.15  7000  0  0".
std::map<int, int> ParseHostForwards(const std::string& text) {
  std::map<int, int> ports;
  for (absl::string_view line : absl::StrSplit(text, absl::ByAnyChar("\r\n"))) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int host = 0, guest = 0;
    if (f.size() >= 6 && f[0] == "TCP[HOST_FORWARD]" && absl::SimpleAtoi(f[3], &host) &&
        absl::SimpleAtoi(f[5], &guest)) {
      ports[guest] = host;
    }
  }
  return ports;
}

// Names of network devices, bridges and CPU models: letters, digits, '-', '_' and '.'.
bool IsPlainName(const std::string& name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool IsInterfaceName(const std::string& name) {
  return !name.empty() && name.size() < IFNAMSIZ && IsPlainName(name);
}

// "52:54:00:12:34:56" with a unicast first octet.
bool IsUnicastMac(const std::string& mac) {
  std::vector<std::string> octets = absl::StrSplit(mac, ':');
  if (octets.size() != 6) return false;
  for (const std::string& o : octets) {
    if (o.size() != 2 || !std::isxdigit(static_cast<unsigned char>(o[0])) ||
        !std::isxdigit(static_cast<unsigned char>(o[1]))) {
      return false;
    }
  }
  return (std::stoi(octets[0], nullptr, 16) & 1) == 0;
}

// A value inside a QEMU option list ("file=<value>,format=raw"): commas are doubled.
std::string OptionValue(const std::string& value) {
  return absl::StrReplaceAll(value, {{",", ",,"}});
}

// The CPU quota a VM starts with.
int StartMilli(const VmSpec& spec) {
  return spec.cpu_milli != 0 ? spec.cpu_milli : spec.cpus_use * 1000;
}

// A user name: what QEMU's -run-with takes, without ',' or a leading '-'.
bool IsUserName(const std::string& name) {
  return !name.empty() && name.size() <= 32 && name[0] != '-' && IsPlainName(name);
}

// The entry of `user` in the user database.
absl::StatusOr<RunAs> LookUpUser(const std::string& user) {
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  int err = getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &found);
  if (err != 0) {
    return absl::ErrnoToStatus(err, absl::StrCat("looking up user \"", user, "\""));
  }
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("no user \"", user, "\""));
  return RunAs{user, pw.pw_uid, pw.pw_gid};
}

// Whether `id` has a mapping in this process's user namespace (`map`: /proc/self/uid_map or
// gid_map, lines "inside outside count"). A process can switch only to mapped ids; the initial
// namespace maps them all.
bool IdMapped(const char* map, unsigned id) {
  std::ifstream in(map);
  if (!in) return true;  // no user namespaces
  unsigned inside = 0, outside = 0, count = 0;
  while (in >> inside >> outside >> count) {
    if (id >= inside && id - inside < count) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::optional<RunAs>> QemuRunAs(const VmSpec& spec, uid_t euid) {
  if (euid != 0) {
    // Nothing to drop; a user other than this process's own cannot be had.
    if (spec.user.empty() || spec.user == "root") return std::nullopt;
    absl::StatusOr<RunAs> user = LookUpUser(spec.user);
    if (user.ok() && user->uid == euid) return std::nullopt;
    return absl::FailedPreconditionError(absl::StrCat(
        "VM ", spec.name, ": QEMU is to run as user \"", spec.user,
        "\", and only root can start it as another user (this process runs as uid ", euid, ")"));
  }
  if (spec.user == "root") {
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
      LOG(WARNING) << "VM " << spec.name
                   << ": QEMU runs as root, as asked (user root): a guest that escapes the "
                      "emulator gets root on this host";
    }
    return std::nullopt;
  }
  const std::string name = spec.user.empty() ? kQemuUser : spec.user;
  absl::StatusOr<RunAs> user = LookUpUser(name);
  if (!user.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM ", spec.name, ": QEMU is to drop root to user \"", name,
        "\": ", user.status().message(),
        ". Run scripts/setup (as root) to create it, name an existing user (VmSpec::user, "
        "--qemu_user), or run QEMU as root on purpose with --qemu_user=root"));
  }
  if (user->uid == 0) return std::nullopt;  // another name for root: nothing to drop
  if (!IdMapped("/proc/self/uid_map", user->uid) || !IdMapped("/proc/self/gid_map", user->gid)) {
    // Root of a user namespace that does not map the user (Bazel's test sandbox, a container):
    // no one to switch to. An explicit user is an error; the default is skipped, loudly.
    if (!spec.user.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("VM ", spec.name, ": QEMU is to drop root to user \"", name, "\" (uid ",
                       user->uid, "), which this process's user namespace does not map"));
    }
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
      LOG(WARNING) << "user " << name << " (uid " << user->uid
                   << ") is not mapped in this process's user namespace (a sandbox or a "
                      "container): QEMU runs as this process's user";
    }
    return std::nullopt;
  }
  return *user;
}

bool KvmUsable() { return access("/dev/kvm", R_OK | W_OK) == 0; }

std::string ResolvedAccel(const VmSpec& spec) {
  if (!spec.accel.empty()) return spec.accel;
  return KvmUsable() ? "kvm" : "tcg";
}

std::string ResolvedCpuModel(const VmSpec& spec) {
  if (!spec.cpu_model.empty()) return spec.cpu_model;
  // TCG emulates "host" poorly and "max" was not faster than qemu64 there.
  return ResolvedAccel(spec) == "kvm" ? "host" : "qemu64";
}

std::string TapMac(const VmSpec& spec, size_t index) {
  if (!spec.taps[index].mac.empty()) return spec.taps[index].mac;
  // FNV-1a of "<name>/<index>": stable across hosts, so a migration target gets the same MAC.
  uint32_t h = 2166136261u;
  for (char c : absl::StrCat(spec.name, "/", index)) {
    h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  }
  // 52:54:00 is QEMU's locally administered prefix.
  return absl::StrFormat("52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
}

absl::Status Validate(const VmSpec& s) {
  auto bad = [&s](auto&&... what) {
    return absl::InvalidArgumentError(absl::StrCat("VM spec \"", s.name, "\": ", what...));
  };
  if (s.name.empty() || !std::all_of(s.name.begin(), s.name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      })) {
    return bad("name must be letters, digits, '-', '_' or '.'");
  }
  if (s.qemu.empty()) return bad("qemu is empty");
  if (!s.user.empty() && !IsUserName(s.user)) {
    return bad("user \"", s.user,
               "\" must be 1 to 32 letters, digits, '-', '_' or '.', not starting with '-'");
  }
  if (!s.accel.empty() && s.accel != "kvm" && s.accel != "tcg") {
    return bad("accel must be kvm, tcg or empty, not ", s.accel);
  }
  if (!IsPlainName(s.cpu_model)) {
    return bad("cpu_model \"", s.cpu_model, "\" must be letters, digits, '-', '_' or '.'");
  }
  if (s.cpu_model == "host" && ResolvedAccel(s) != "kvm") {
    return bad("cpu_model host needs accel kvm, not ", ResolvedAccel(s));
  }
  if (s.cpus_min < 1 || s.cpus_max > kMaxCpus || s.cpus_min > s.cpus_max) {
    return bad("cpus_min ", s.cpus_min, " and cpus_max ", s.cpus_max,
               " must satisfy 1 <= min <= max <= ", kMaxCpus);
  }
  if (s.cpus_use < s.cpus_min || s.cpus_use > s.cpus_max) {
    return bad("cpus_use ", s.cpus_use, " is outside ", s.cpus_min, "..", s.cpus_max);
  }
  if (s.cpu_milli < 0 || s.cpu_milli > s.cpus_max * 1000) {
    return bad("cpu_milli ", s.cpu_milli, " is outside 0..", s.cpus_max * 1000);
  }
  if (s.cgroup.mode != HostCgroupSpec::Mode::kOff &&
      (s.cgroup.parent.empty() || s.cgroup.parent[0] != '/' ||
       s.cgroup.memory_overhead_bytes < 0)) {
    return bad("cgroup.parent \"", s.cgroup.parent,
               "\" must start with '/', and cgroup.memory_overhead_bytes (",
               s.cgroup.memory_overhead_bytes, ") must not be negative");
  }
  if (!IsPowerOfTwo(s.virtio_mem_block_bytes) || s.virtio_mem_block_bytes < 2 * kMiB) {
    return bad("virtio_mem_block_bytes ", s.virtio_mem_block_bytes,
               " must be a power of two of at least 2 MiB");
  }
  if (s.memory_slot_bytes <= 0 || s.memory_slot_bytes % s.virtio_mem_block_bytes != 0) {
    return bad("memory_slot_bytes ", s.memory_slot_bytes,
               " must be a positive multiple of virtio_mem_block_bytes (", s.virtio_mem_block_bytes,
               ")");
  }
  if (s.memory_slots_min < 1 || s.memory_slots_min > s.memory_slots_max) {
    return bad("memory_slots_min ", s.memory_slots_min, " and memory_slots_max ",
               s.memory_slots_max, " must satisfy 1 <= min <= max");
  }
  if (s.memory_slots_max > (int64_t{1} << 42) / s.memory_slot_bytes) {
    return bad("memory_slots_max ", s.memory_slots_max, " slots of ", s.memory_slot_bytes,
               " bytes is more than 4 TiB");
  }
  if (s.memory_slots_use < s.memory_slots_min || s.memory_slots_use > s.memory_slots_max) {
    return bad("memory_slots_use ", s.memory_slots_use, " is outside ", s.memory_slots_min, "..",
               s.memory_slots_max);
  }
  if (s.kernel.empty() &&
      (!s.initrd.empty() || !s.kernel_cmdline.empty() || !s.kernel_args.empty())) {
    return bad("initrd, kernel_cmdline and kernel_args need a kernel");
  }
  for (size_t i = 0; i < s.kernel_args.size(); ++i) {
    const std::string& arg = s.kernel_args[i];
    if (arg.empty() || std::any_of(arg.begin(), arg.end(), [](char c) {
          return std::isspace(static_cast<unsigned char>(c)) || c == '\0';
        })) {
      return bad("kernel_args[", i, "] \"", arg, "\" must be one word");
    }
  }
  static const std::set<std::string> kFormats = {"raw", "qcow2"};
  static const std::set<std::string> kCaches = {"none", "writeback", "writethrough", "directsync",
                                                "unsafe"};
  for (size_t i = 0; i < s.disks.size(); ++i) {
    const Disk& d = s.disks[i];
    if (d.path.empty()) return bad("disks[", i, "].path is empty");
    if (!kFormats.count(d.format)) {
      return bad("disks[", i, "].format must be raw or qcow2, not \"", d.format, "\"");
    }
    if (!kCaches.count(d.cache)) {
      return bad("disks[", i,
                 "].cache must be none, writeback, writethrough, directsync or unsafe, not \"",
                 d.cache, "\"");
    }
  }
  std::set<std::string> tap_names;
  for (size_t i = 0; i < s.taps.size(); ++i) {
    const TapInterface& t = s.taps[i];
    if (!IsInterfaceName(t.bridge)) {
      return bad("taps[", i, "].bridge \"", t.bridge, "\" is not an interface name (1 to ",
                 IFNAMSIZ - 1, " letters, digits, '-', '_' or '.')");
    }
    if (!t.tap.empty() && (!IsInterfaceName(t.tap) || !tap_names.insert(t.tap).second)) {
      return bad("taps[", i, "].tap \"", t.tap, "\" is not an interface name or is used twice");
    }
    if (!t.mac.empty() && !IsUnicastMac(t.mac)) {
      return bad("taps[", i, "].mac \"", t.mac, "\" is not a unicast MAC address");
    }
  }
  std::set<int> guest_ports;
  for (const HostForward& f : s.host_forwards) {
    if (f.guest_port < 1 || f.guest_port > 65535 || f.host_port < 0 || f.host_port > 65535) {
      return bad("host forward ", f.host_port, " -> ", f.guest_port, ": ports out of range");
    }
    if (!guest_ports.insert(f.guest_port).second) {
      return bad("guest port ", f.guest_port, " is forwarded twice");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> OpenDisk(const Disk& d) {
  // QEMU's BDRV_O_NOCACHE; its fdsets hand out only a descriptor whose O_DIRECT matches.
  const int direct = d.cache == "none" || d.cache == "directsync" ? O_DIRECT : 0;
  std::vector<int> fds;
  for (int mode : {O_RDWR, O_RDONLY}) {
    if (mode == O_RDWR && d.read_only) continue;
    int fd = open(d.path.c_str(), mode | direct | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      for (int f : fds) close(f);
      return absl::ErrnoToStatus(
          err, absl::StrCat("opening ", d.path, mode == O_RDWR ? " read-write" : " read-only",
                            direct ? " with O_DIRECT (cache " + d.cache + ")" : ""));
    }
    fds.push_back(fd);
  }
  return fds;
}

std::vector<std::string> QemuCommandLine(const VmSpec& s, const std::string& dir,
                                         const std::vector<int>& tap_fds,
                                         const std::vector<std::vector<int>>& disk_fds,
                                         const std::string& run_as) {
  CHECK_EQ(tap_fds.size(), s.taps.size()) << "one open tap per TapInterface";
  CHECK_EQ(disk_fds.size(), s.disks.size()) << "one opened image per Disk";
  std::string accel = ResolvedAccel(s);
  std::string cpu_model = ResolvedCpuModel(s);
  // Under TCG, QEMU 10 never frees the translation context of an unplugged vCPU and aborts once
  // it has created `maxcpus` vCPUs in its life. Declaring the most possible CPUs x86 allows
  // without x2apic makes that budget kMaxCpus vCPU creations per QEMU process; the guest is
  // told its real bound (possible_cpus), so it does not reserve per-CPU memory for the rest, and
  // the resizer never plugs a core id at or above cpus_max.
  int max_cpus = accel == "tcg" ? kMaxCpus : s.cpus_max;
  std::vector<std::string> a = {
      s.qemu,
      "-name",
      s.name,
      "-machine",
      "q35",
      "-accel",
      accel,
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      // A guest panic (panic=-1 in the guest) or reboot ends QEMU instead of looping.
      "-no-reboot",
      "-cpu",
      cpu_model,
      "-smp",
      absl::StrCat("cpus=", s.cpus_min, ",maxcpus=", max_cpus, ",sockets=1,cores=", max_cpus,
                   ",threads=1"),
  };
  if (s.sandbox) {
    // The filter is installed before the drop, and QEMU's own setgid/setuid would meet it:
    // elevateprivileges=deny kills a dropping QEMU (SIGSYS). After the drop it has no privilege
    // left to raise.
    a.insert(a.end(), {"-sandbox", absl::StrCat("on,obsolete=deny,elevateprivileges=",
                                                run_as.empty() ? "deny" : "allow",
                                                ",spawn=deny,resourcecontrol=deny")});
  }
  if (!run_as.empty()) a.insert(a.end(), {"-run-with", absl::StrCat("user=", run_as)});
  // CPUs above the minimum are devices with an id, so they can be unplugged later. Their type is
  // the model's, as query-hotpluggable-cpus reports it to the resizer.
  for (int core = s.cpus_min; core < s.cpus_use; ++core) {
    a.insert(a.end(), {"-device", absl::StrCat(cpu_model, "-x86_64-cpu,id=cpu", core,
                                               ",socket-id=0,core-id=", core, ",thread-id=0")});
  }
  int64_t base = s.memory_slots_min * s.memory_slot_bytes;
  int64_t max = s.memory_slots_max * s.memory_slot_bytes;
  if (max > base) {
    a.insert(a.end(), {"-m", absl::StrCat("size=", base, "b,maxmem=", max, "b")});
    // virtio-mem-pci can be hot-plugged on q35 only behind a PCIe root port.
    a.insert(a.end(), {"-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1"});
    a.insert(a.end(), {"-object", absl::StrCat("memory-backend-ram,id=", kVirtioMemBackendId,
                                               ",size=", max - base, "b")});
    a.insert(a.end(),
             {"-device",
              absl::StrCat("virtio-mem-pci,id=", kVirtioMemId, ",memdev=", kVirtioMemBackendId,
                           ",bus=rp1,block-size=", s.virtio_mem_block_bytes, ",requested-size=",
                           (s.memory_slots_use - s.memory_slots_min) * s.memory_slot_bytes)});
  } else {
    a.insert(a.end(), {"-m", absl::StrCat("size=", base, "b")});
  }
  // Entropy for the guest from the host: without it the guest's random pool is ready ~2 s after
  // boot under TCG (qemu64 has no RDRAND), and whatever needs it (PostgreSQL) waits.
  a.insert(a.end(), {"-device", "virtio-rng-pci"});
  if (!s.host_forwards.empty()) {
    std::string netdev = "user,id=net0,restrict=on";
    for (const HostForward& f : s.host_forwards) {
      absl::StrAppend(&netdev, ",hostfwd=tcp:127.0.0.1:", f.host_port, "-:", f.guest_port);
    }
    a.insert(a.end(), {"-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile="});
  }
  for (size_t i = 0; i < s.taps.size(); ++i) {
    // vhost needs /dev/vhost-net, which hosts may lack; QEMU's own backend always works.
    a.insert(a.end(),
             {"-netdev", absl::StrCat("tap,id=tap", i, ",fd=", tap_fds[i], ",vhost=off"), "-device",
              absl::StrCat("virtio-net-pci,netdev=tap", i, ",mac=", TapMac(s, i), ",romfile=")});
  }
  for (size_t i = 0; i < s.disks.size(); ++i) {
    const Disk& d = s.disks[i];
    // The set's id is the disk's index + 1; its opaque string names the image (query-fdsets).
    // No image locks (file.locking=off): QEMU takes them on a descriptor of the set and drops
    // them by closing it, which frees nothing while the set holds the same open file, so a
    // migration target could never lock an image its source had used. A migration's handover
    // (the source inactivates its images before the target activates them) remains.
    for (int fd : disk_fds[i]) {
      a.insert(a.end(), {"-add-fd",
                         absl::StrCat("fd=", fd, ",set=", i + 1, ",opaque=", OptionValue(d.path))});
    }
    a.insert(a.end(), {"-drive",
                       absl::StrCat("file=/dev/fdset/", i + 1, ",file.locking=off,if=none,id=disk",
                                    i, ",format=", d.format, ",cache=", d.cache,
                                    d.read_only ? ",readonly=on" : ""),
                       "-device", absl::StrCat("virtio-blk-pci,drive=disk", i, ",id=vd", i)});
  }
  if (!s.kernel.empty()) {
    a.insert(a.end(), {"-kernel", s.kernel});
    if (!s.initrd.empty()) a.insert(a.end(), {"-initrd", s.initrd});
    std::string cmdline = absl::StrJoin({s.kernel_cmdline, absl::StrJoin(s.kernel_args, " ")}, " ");
    cmdline = std::string(absl::StripAsciiWhitespace(cmdline));
    if (max_cpus != s.cpus_max) {
      absl::StrAppend(&cmdline, cmdline.empty() ? "" : " ", "possible_cpus=", s.cpus_max);
    }
    if (!cmdline.empty()) a.insert(a.end(), {"-append", cmdline});
  }
  a.insert(
      a.end(),
      {"-chardev", absl::StrCat("socket,id=serial0,path=", dir, "/serial.sock,server=on,wait=off"),
       "-serial", "chardev:serial0"});
  a.insert(a.end(), {"-qmp", absl::StrCat("unix:", dir, "/qmp.sock,server=on,wait=off")});
  // A second QMP socket for a controller outside this process (the autoscaling agent): QEMU
  // serves one client per socket.
  a.insert(a.end(), {"-qmp", absl::StrCat("unix:", dir, "/agent.qmp.sock,server=on,wait=off")});
  if (!s.agent_token.empty()) {
    a.insert(a.end(),
             {"-fw_cfg", absl::StrCat("name=", kAgentTokenFwCfgName, ",file=",
                                      OptionValue(absl::StrCat(dir, "/", kAgentTokenFile)))});
  }
  if (s.incoming) {
    a.insert(a.end(), {"-incoming", "defer"});
  } else {
    a.push_back("-S");
  }
  a.insert(a.end(), s.extra_args.begin(), s.extra_args.end());
  return a;
}

absl::StatusOr<OpenedTap> OpenTap(const std::string& bridge, const std::string& name) {
  auto fail = [&](const std::string& what, int err) {
    return absl::ErrnoToStatus(
        err, absl::StrCat("tap \"", name, "\" on bridge \"", bridge, "\": ", what));
  };
  if (!IsInterfaceName(bridge) || (!name.empty() && !IsInterfaceName(name))) {
    return absl::InvalidArgumentError(
        absl::StrCat("tap \"", name, "\" on bridge \"", bridge, "\": not interface names"));
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return fail("open /dev/net/tun", errno);
  ifreq ifr{};
  // IFF_TUN_EXCL: a name already in use is an error, not a second queue of someone's tap.
  // ifr_flags is a short; IFF_TUN_EXCL is its top bit.
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL);
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    close(fd);
    return fail("TUNSETIFF (creating the tap needs CAP_NET_ADMIN and a free name)", err);
  }
  OpenedTap tap{fd, ifr.ifr_name};
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    int err = errno;
    close(fd);
    return fail("socket", err);
  }
  auto close_both = [&](const std::string& what, int err) {
    close(sock);
    close(fd);
    return fail(what, err);
  };
  ifreq br{};
  strncpy(br.ifr_name, bridge.c_str(), IFNAMSIZ - 1);
  br.ifr_ifindex = static_cast<int>(if_nametoindex(tap.name.c_str()));
  if (br.ifr_ifindex == 0) return close_both("if_nametoindex of the new tap", errno);
  if (ioctl(sock, SIOCBRADDIF, &br) != 0) {
    return close_both("attaching to the bridge (does it exist in this network namespace?)", errno);
  }
  ifreq up{};
  strncpy(up.ifr_name, tap.name.c_str(), IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &up) != 0) return close_both("SIOCGIFFLAGS", errno);
  up.ifr_flags |= IFF_UP;
  if (ioctl(sock, SIOCSIFFLAGS, &up) != 0) return close_both("bringing it up", errno);
  close(sock);
  return tap;
}

absl::StatusOr<std::unique_ptr<HostCgroup>> Vm::MakeCgroup(const VmSpec& spec) {
  if (spec.cgroup.mode == HostCgroupSpec::Mode::kOff) return nullptr;
  HostCgroup::RemoveOrphans(spec.cgroup.parent);
  // Random, not a pid: processes in other pid namespaces (sandboxed tests) share the hierarchy.
  absl::BitGen bits;
  std::string path =
      absl::StrCat(spec.cgroup.parent == "/" ? "" : spec.cgroup.parent, "/", spec.name, ".",
                   absl::Hex(absl::Uniform<uint64_t>(bits), absl::kZeroPad16));
  absl::StatusOr<std::unique_ptr<HostCgroup>> cg = HostCgroup::Create(path);
  absl::Status s = cg.status();
  if (s.ok()) {
    s = (*cg)->SetMemoryLimit(spec.memory_slots_max * spec.memory_slot_bytes +
                              spec.cgroup.memory_overhead_bytes);
  }
  if (s.ok()) {
    s = (*cg)->SetCpuLimit(StartMilli(spec));
  }
  if (s.ok()) return cg;
  s = Annotate(s, absl::StrCat("VM ", spec.name, ": host cgroup ", path));
  if (spec.cgroup.mode == HostCgroupSpec::Mode::kRequired) return s;
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) {
    LOG(WARNING) << s << "; VMs run without a host cgroup (no CPU quota, no memory cap)";
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Start(const VmSpec& spec, const StartOptions& options) {
  RETURN_IF_ERROR(Validate(spec));
  ASSIGN_OR_RETURN(std::optional<RunAs> run_as, QemuRunAs(spec));
  absl::Time deadline = absl::Now() + options.timeout;

  std::string dir = options.runtime_dir;
  bool own_dir = dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/neonvm-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp /tmp/neonvm-XXXXXX: ", ErrnoText(errno)));
    }
    dir = tmpl;
  }
  auto cleanup_dir = [&] {
    if (own_dir) std::filesystem::remove_all(dir);
  };
  if (dir.size() + std::string("/serial.sock").size() > kMaxUnixPath) {
    cleanup_dir();
    return absl::InvalidArgumentError(absl::StrCat("VM ", spec.name, ": runtime directory ", dir,
                                                   " is too long for unix socket paths"));
  }
  // QEMU's, and no one else's: after the drop it makes its migration socket there.
  if ((run_as.has_value() && chown(dir.c_str(), run_as->uid, run_as->gid) != 0) ||
      chmod(dir.c_str(), 0700) != 0) {
    int err = errno;
    cleanup_dir();
    return absl::ErrnoToStatus(
        err, absl::StrCat("VM ", spec.name, ": making runtime directory ", dir, " mode 0700",
                          run_as.has_value() ? absl::StrCat(" of user ", run_as->user) : ""));
  }

  // QEMU would say the same, less clearly, after the cgroup and the taps exist.
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const Disk& d = spec.disks[i];
    if (access(d.path.c_str(), d.read_only ? R_OK : R_OK | W_OK) != 0) {
      int err = errno;
      cleanup_dir();
      return absl::FailedPreconditionError(absl::StrCat(
          "VM ", spec.name, ": disks[", i, "] ", d.path, ": ", ErrnoText(err),
          spec.incoming ? " (a migration target opens the source's disk images: the hosts must "
                          "share the storage under them)"
                        : ""));
    }
  }

  if (!spec.agent_token.empty()) {
    // Only its owner may read it, from the start; a file left there is replaced.
    const std::string path = absl::StrCat(dir, "/", kAgentTokenFile);
    absl::Status s = absl::OkStatus();
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      s = absl::InternalError(absl::StrCat("unlink ", path, ": ", ErrnoText(errno)));
    }
    if (s.ok()) s = WriteNewFile(path, spec.agent_token, 0600);
    if (!s.ok()) {
      cleanup_dir();
      return absl::InternalError(absl::StrCat("VM ", spec.name, ": ", s.message()));
    }
  }
  // Opened here, so that QEMU never opens an image by path (see OpenDisk).
  std::vector<std::vector<int>> disk_fds;
  std::vector<int> all_disk_fds;
  auto close_disks = [&] {
    for (int fd : all_disk_fds) close(fd);
    all_disk_fds.clear();
  };
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    absl::StatusOr<std::vector<int>> fds = OpenDisk(spec.disks[i]);
    if (!fds.ok()) {
      close_disks();
      cleanup_dir();
      return Annotate(fds.status(), absl::StrCat("VM ", spec.name, ": disks[", i, "]"));
    }
    disk_fds.push_back(*fds);
    all_disk_fds.insert(all_disk_fds.end(), fds->begin(), fds->end());
  }

  std::string log = dir + "/qemu.log";
  // The directory may be QEMU's user's by now: a link planted there is not followed.
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (log_fd < 0) {
    close_disks();
    cleanup_dir();
    return absl::InternalError(
        absl::StrCat("VM ", spec.name, ": open ", log, ": ", ErrnoText(errno)));
  }
  absl::StatusOr<std::unique_ptr<HostCgroup>> cgroup = MakeCgroup(spec);
  if (!cgroup.ok()) {
    close(log_fd);
    close_disks();
    cleanup_dir();
    return cgroup.status();
  }
  // QEMU gets the taps as descriptors; once it has them, this process's copies go, and each
  // tap lives exactly as long as QEMU.
  std::vector<int> tap_fds;
  std::vector<std::string> tap_names;
  auto close_taps = [&] {
    for (int fd : tap_fds) close(fd);
    tap_fds.clear();
  };
  int netns_fd = -1;
  if (!options.netns.empty()) {
    netns_fd = open(options.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) {
      int err = errno;
      close(log_fd);
      close_disks();
      cleanup_dir();
      return absl::ErrnoToStatus(err, absl::StrCat("VM ", spec.name, ": open ", options.netns));
    }
  }
  auto open_tap = [&](const TapInterface& t) -> absl::StatusOr<OpenedTap> {
    if (netns_fd < 0) return OpenTap(t.bridge, t.tap);
    // setns changes only the calling thread's namespace: a thread of its own makes the tap there.
    absl::StatusOr<OpenedTap> tap = absl::InternalError("not run");
    std::thread([&] {
      tap = setns(netns_fd, CLONE_NEWNET) == 0
                ? OpenTap(t.bridge, t.tap)
                : absl::ErrnoToStatus(errno, absl::StrCat("setns ", options.netns));
    }).join();
    return tap;
  };
  for (size_t i = 0; i < spec.taps.size(); ++i) {
    absl::StatusOr<OpenedTap> tap = open_tap(spec.taps[i]);
    if (!tap.ok()) {
      close_taps();
      if (netns_fd >= 0) close(netns_fd);
      close(log_fd);
      close_disks();
      cleanup_dir();
      return Annotate(tap.status(), absl::StrCat("VM ", spec.name, ": taps[", i, "]"));
    }
    tap_fds.push_back(tap->fd);
    tap_names.push_back(tap->name);
  }
  std::vector<std::string> argv =
      QemuCommandLine(spec, dir, tap_fds, disk_fds, run_as.has_value() ? run_as->user : "");
  SpawnOptions spawn;
  spawn.output_fd = log_fd;
  spawn.inherit_fds = tap_fds;
  spawn.inherit_fds.insert(spawn.inherit_fds.end(), all_disk_fds.begin(), all_disk_fds.end());
  spawn.netns_fd = netns_fd;
  absl::StatusOr<std::unique_ptr<Subprocess>> qemu = Subprocess::Start(argv, spawn);
  close(log_fd);
  if (netns_fd >= 0) close(netns_fd);
  close_taps();
  close_disks();
  if (!qemu.ok()) {
    cleanup_dir();
    return Annotate(qemu.status(), absl::StrCat("starting VM ", spec.name));
  }
  VLOG(1) << "VM " << spec.name << ": started QEMU pid " << (*qemu)->pid() << ": "
          << absl::StrJoin(argv, " ");

  // From here on the Vm owns the process, its cgroup and the directory: an early return kills
  // and removes.
  pid_t pid = (*qemu)->pid();
  std::unique_ptr<Vm> vm(new Vm(spec, dir, own_dir, std::move(*qemu), std::move(*cgroup)));
  vm->tap_names_ = std::move(tap_names);
  if (vm->cgroup_ != nullptr) {
    vm->cpu_milli_ = StartMilli(spec);
    // QEMU has just exec'd: it has at most a thread or two and no guest memory yet, and
    // cgroup.procs moves every thread it has; all later threads (the vCPUs) start in the group.
    RETURN_IF_ERROR(Annotate(vm->cgroup_->Attach(pid), absl::StrCat("VM ", spec.name)));
  }
  RETURN_IF_ERROR(vm->ConnectQmp(options, deadline));
  if (!spec.host_forwards.empty()) RETURN_IF_ERROR(vm->ReadHostPorts());
  return vm;
}

Vm::Vm(VmSpec spec, std::string runtime_dir, bool own_dir, std::unique_ptr<Subprocess> qemu,
       std::unique_ptr<HostCgroup> cgroup)
    : spec_(std::move(spec)),
      runtime_dir_(std::move(runtime_dir)),
      own_dir_(own_dir),
      qemu_(std::move(qemu)),
      cgroup_(std::move(cgroup)) {}

Vm::~Vm() {
  Kill();
  RemoveCgroup().IgnoreError();  // logged
  qmp_.reset();
  if (own_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(runtime_dir_, ignored);
  }
}

std::string Vm::serial_path() const { return runtime_dir_ + "/serial.sock"; }
std::string Vm::qmp_path() const { return runtime_dir_ + "/qmp.sock"; }
std::string Vm::agent_qmp_path() const { return runtime_dir_ + "/agent.qmp.sock"; }
std::string Vm::log_path() const { return runtime_dir_ + "/qemu.log"; }

absl::Status Vm::ConnectQmp(const StartOptions& options, absl::Time deadline) {
  std::string address = "unix:" + qmp_path();
  while (true) {
    if (!Running()) {
      return absl::FailedPreconditionError(absl::StrCat("VM ", name(), ": QEMU ", ExitDescription(),
                                                        " before QMP was up: ", LogTail(1000)));
    }
    qmp::QmpClientOptions o = options.qmp;
    o.connect_timeout = std::max(deadline - absl::Now(), absl::Milliseconds(1));
    absl::StatusOr<std::unique_ptr<qmp::QmpClient>> client = qmp::QmpClient::Connect(address, o);
    if (client.ok()) {
      qmp_ = std::move(*client);
      return absl::OkStatus();
    }
    // Unavailable: the socket is not there or not listening yet.
    if (client.status().code() != absl::StatusCode::kUnavailable || absl::Now() >= deadline) {
      return Annotate(client.status(), absl::StrCat("VM ", name(), ": waiting for QMP"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::Status Vm::ReadHostPorts() {
  ASSIGN_OR_RETURN(std::string reply,
                   qmp_->Execute("human-monitor-command", R"({"command-line":"info usernet"})"));
  // The reply is a JSON string; the table has no characters that JSON escapes except \r\n.
  std::string text = reply;
  for (auto [from, to] : {std::pair<const char*, const char*>{"\\r", "\r"}, {"\\n", "\n"}}) {
    size_t pos = 0;
    while ((pos = text.find(from, pos)) != std::string::npos) text.replace(pos, 2, to);
  }
  host_ports_ = ParseHostForwards(text);
  for (const HostForward& f : spec_.host_forwards) {
    if (!host_ports_.count(f.guest_port)) {
      return absl::InternalError(absl::StrCat(
          "VM ", name(), ": QEMU lists no forward to guest port ", f.guest_port, " in: ", text));
    }
  }
  return absl::OkStatus();
}

absl::Status Vm::Resume() {
  return Annotate(qmp_->Execute("cont").status(), absl::StrCat("resuming VM ", name()));
}

absl::StatusOr<int> Vm::HostPort(int guest_port) const {
  auto it = host_ports_.find(guest_port);
  if (it == host_ports_.end()) {
    return absl::NotFoundError(
        absl::StrCat("VM ", name(), ": guest port ", guest_port, " is not forwarded"));
  }
  return it->second;
}

bool Vm::Running() { return qemu_->Running(); }

std::string Vm::ExitDescription() {
  std::optional<int> status = qemu_->wait_status();
  return status.has_value() ? DescribeWaitStatus(*status) : std::string();
}

absl::Status Vm::Stop(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  if (!Running()) return RemoveCgroup();
  // QEMU may close the socket before its reply arrives; either way it is on its way out.
  absl::Status quit = qmp_->Execute("quit", {}, timeout).status();
  if (!quit.ok() && quit.code() != absl::StatusCode::kUnavailable) {
    LOG(WARNING) << "VM " << name() << ": " << quit;
  }
  if (qemu_->Wait(std::max(deadline - absl::Now(), absl::ZeroDuration())).ok()) {
    return RemoveCgroup();
  }
  Kill();
  RemoveCgroup().IgnoreError();
  return absl::DeadlineExceededError(absl::StrCat("VM ", name(), ": QEMU did not exit within ",
                                                  absl::FormatDuration(timeout),
                                                  " of quit; killed it"));
}

void Vm::Kill() { qemu_->Kill(); }

absl::Status Vm::SetCpuLimit(int milli) {
  if (cgroup_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("VM ", name(), " runs without a host cgroup: no CPU limit to set"));
  }
  RETURN_IF_ERROR(Annotate(cgroup_->SetCpuLimit(milli), absl::StrCat("VM ", name())));
  cpu_milli_ = milli;
  return absl::OkStatus();
}

absl::Status Vm::RemoveCgroup() {
  if (cgroup_ == nullptr || Running()) return absl::OkStatus();
  absl::Status s = cgroup_->Remove();
  if (!s.ok()) LOG(WARNING) << "VM " << name() << ": " << s;
  return s;
}

std::string Vm::LogTail(size_t bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  if (!in) return "(no QEMU log)";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - static_cast<std::streamoff>(bytes));
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), tail.size());
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  return tail.empty() ? "(QEMU log is empty)" : tail;
}

}  // namespace autoscale::neonvm::launcher
