#include "neonvm/launcher/vm.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

}  // namespace

bool KvmUsable() { return access("/dev/kvm", R_OK | W_OK) == 0; }

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
  if (!s.accel.empty() && s.accel != "kvm" && s.accel != "tcg") {
    return bad("accel must be kvm, tcg or empty, not ", s.accel);
  }
  if (s.cpus_min < 1 || s.cpus_max > kMaxCpus || s.cpus_min > s.cpus_max) {
    return bad("cpus_min ", s.cpus_min, " and cpus_max ", s.cpus_max,
               " must satisfy 1 <= min <= max <= ", kMaxCpus);
  }
  if (s.cpus_use < s.cpus_min || s.cpus_use > s.cpus_max) {
    return bad("cpus_use ", s.cpus_use, " is outside ", s.cpus_min, "..", s.cpus_max);
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
  if (s.kernel.empty() && (!s.initrd.empty() || !s.kernel_cmdline.empty())) {
    return bad("initrd and kernel_cmdline need a kernel");
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

std::vector<std::string> QemuCommandLine(const VmSpec& s, const std::string& dir) {
  std::string accel = s.accel.empty() ? (KvmUsable() ? "kvm" : "tcg") : s.accel;
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
      "-smp",
      absl::StrCat("cpus=", s.cpus_min, ",maxcpus=", max_cpus, ",sockets=1,cores=", max_cpus,
                   ",threads=1"),
  };
  if (s.sandbox) {
    a.insert(a.end(), {"-sandbox",
                       "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  }
  // CPUs above the minimum are devices with an id, so they can be unplugged later.
  for (int core = s.cpus_min; core < s.cpus_use; ++core) {
    a.insert(a.end(), {"-device", absl::StrCat("qemu64-x86_64-cpu,id=cpu", core,
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
  if (!s.host_forwards.empty()) {
    std::string netdev = "user,id=net0,restrict=on";
    for (const HostForward& f : s.host_forwards) {
      absl::StrAppend(&netdev, ",hostfwd=tcp:127.0.0.1:", f.host_port, "-:", f.guest_port);
    }
    a.insert(a.end(), {"-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,romfile="});
  }
  if (!s.kernel.empty()) {
    a.insert(a.end(), {"-kernel", s.kernel});
    if (!s.initrd.empty()) a.insert(a.end(), {"-initrd", s.initrd});
    std::string cmdline = s.kernel_cmdline;
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
  if (s.incoming) {
    a.insert(a.end(), {"-incoming", "defer"});
  } else {
    a.push_back("-S");
  }
  a.insert(a.end(), s.extra_args.begin(), s.extra_args.end());
  return a;
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Start(const VmSpec& spec, const StartOptions& options) {
  RETURN_IF_ERROR(Validate(spec));
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

  std::string log = dir + "/qemu.log";
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    cleanup_dir();
    return absl::InternalError(
        absl::StrCat("VM ", spec.name, ": open ", log, ": ", ErrnoText(errno)));
  }
  std::vector<std::string> argv = QemuCommandLine(spec, dir);
  SpawnOptions spawn;
  spawn.output_fd = log_fd;
  absl::StatusOr<std::unique_ptr<Subprocess>> qemu = Subprocess::Start(argv, spawn);
  close(log_fd);
  if (!qemu.ok()) {
    cleanup_dir();
    return Annotate(qemu.status(), absl::StrCat("starting VM ", spec.name));
  }
  VLOG(1) << "VM " << spec.name << ": started QEMU pid " << (*qemu)->pid() << ": "
          << absl::StrJoin(argv, " ");

  // From here on the Vm owns the process and the directory: an early return kills and removes.
  std::unique_ptr<Vm> vm(new Vm(spec, dir, own_dir, std::move(*qemu)));
  RETURN_IF_ERROR(vm->ConnectQmp(options, deadline));
  if (!spec.host_forwards.empty()) RETURN_IF_ERROR(vm->ReadHostPorts());
  return vm;
}

Vm::Vm(VmSpec spec, std::string runtime_dir, bool own_dir, std::unique_ptr<Subprocess> qemu)
    : spec_(std::move(spec)),
      runtime_dir_(std::move(runtime_dir)),
      own_dir_(own_dir),
      qemu_(std::move(qemu)) {}

Vm::~Vm() {
  Kill();
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
  if (!Running()) return absl::OkStatus();
  // QEMU may close the socket before its reply arrives; either way it is on its way out.
  absl::Status quit = qmp_->Execute("quit", {}, timeout).status();
  if (!quit.ok() && quit.code() != absl::StatusCode::kUnavailable) {
    LOG(WARNING) << "VM " << name() << ": " << quit;
  }
  if (qemu_->Wait(std::max(deadline - absl::Now(), absl::ZeroDuration())).ok()) {
    return absl::OkStatus();
  }
  Kill();
  return absl::DeadlineExceededError(absl::StrCat("VM ", name(), ": QEMU did not exit within ",
                                                  absl::FormatDuration(timeout),
                                                  " of quit; killed it"));
}

void Vm::Kill() { qemu_->Kill(); }

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
