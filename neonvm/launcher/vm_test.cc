// The launcher: spec validation, the QEMU command line, and real QEMU without a guest: start,
// the CPUs and memory a spec asks for, forwarded ports, stop through quit, kill, reaping, QEMU
// errors, and QEMU dying with this process.
#include "neonvm/launcher/vm.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/runfiles.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"

namespace autoscale::neonvm::launcher {
namespace {

using testing::NoGuestSpec;

bool Contains(const std::vector<std::string>& args, const std::vector<std::string>& seq) {
  return std::search(args.begin(), args.end(), seq.begin(), seq.end()) != args.end();
}

// True while a process with `pid` exists, zombie or not.
bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0; }

TEST(QemuCommandLine, DescribesTheSpec) {
  VmSpec spec;
  spec.name = "vm7";
  spec.accel = "tcg";
  spec.cpus_min = 1;
  spec.cpus_max = 4;
  spec.cpus_use = 3;
  spec.memory_slot_bytes = 256 * kMiB;
  spec.memory_slots_min = 2;
  spec.memory_slots_max = 8;
  spec.memory_slots_use = 3;
  spec.kernel = "/k/vmlinuz";
  spec.initrd = "/k/initrd.gz";
  spec.kernel_cmdline = "console=ttyS0 quiet";
  spec.host_forwards = {{.guest_port = 10301}, {.guest_port = 22, .host_port = 2222}};
  std::vector<std::string> a = QemuCommandLine(spec, "/tmp/neonvm-x");

  EXPECT_EQ(a[0], "qemu-system-x86_64");
  EXPECT_TRUE(Contains(a, {"-name", "vm7"}));
  EXPECT_TRUE(Contains(a, {"-machine", "q35"}));
  EXPECT_TRUE(Contains(a, {"-accel", "tcg"}));
  EXPECT_TRUE(Contains(a, {"-no-reboot"}));
  EXPECT_TRUE(Contains(a, {"-cpu", "qemu64"}));
  EXPECT_TRUE(Contains(a, {"-device", "virtio-rng-pci"}));
  EXPECT_TRUE(Contains(
      a, {"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}));
  // Under TCG: room for 255 vCPU creations, the guest told about 4.
  EXPECT_TRUE(Contains(a, {"-smp", "cpus=1,maxcpus=255,sockets=1,cores=255,threads=1"}));
  EXPECT_TRUE(
      Contains(a, {"-device", "qemu64-x86_64-cpu,id=cpu1,socket-id=0,core-id=1,thread-id=0",
                   "-device", "qemu64-x86_64-cpu,id=cpu2,socket-id=0,core-id=2,thread-id=0"}));
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(a, " "), "id=cpu3"));
  EXPECT_TRUE(Contains(a, {"-m", "size=536870912b,maxmem=2147483648b"}));
  EXPECT_TRUE(Contains(a, {"-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1"}));
  EXPECT_TRUE(Contains(a, {"-object", "memory-backend-ram,id=vmem0,size=1610612736b"}));
  EXPECT_TRUE(Contains(a, {"-device",
                           "virtio-mem-pci,id=vm0,memdev=vmem0,bus=rp1,block-size=8388608,"
                           "requested-size=268435456"}));
  EXPECT_TRUE(Contains(a, {"-netdev",
                           "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:10301,"
                           "hostfwd=tcp:127.0.0.1:2222-:22",
                           "-device", "virtio-net-pci,netdev=net0,romfile="}));
  EXPECT_TRUE(Contains(a, {"-kernel", "/k/vmlinuz", "-initrd", "/k/initrd.gz", "-append",
                           "console=ttyS0 quiet possible_cpus=4"}));
  EXPECT_TRUE(Contains(
      a, {"-chardev", "socket,id=serial0,path=/tmp/neonvm-x/serial.sock,server=on,wait=off",
          "-serial", "chardev:serial0"}));
  EXPECT_TRUE(Contains(a, {"-qmp", "unix:/tmp/neonvm-x/qmp.sock,server=on,wait=off"}));
  EXPECT_TRUE(Contains(a, {"-qmp", "unix:/tmp/neonvm-x/agent.qmp.sock,server=on,wait=off"}));
  EXPECT_TRUE(Contains(a, {"-S"}));
  EXPECT_FALSE(Contains(a, {"-incoming", "defer"}));

  spec.sandbox = false;
  EXPECT_FALSE(
      absl::StrContains(absl::StrJoin(QemuCommandLine(spec, "/tmp/neonvm-x"), " "), "-sandbox"));
  spec.sandbox = true;

  // Dropping root: QEMU's own setgid/setuid must pass its filter.
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(a, " "), "-run-with"));
  a = QemuCommandLine(spec, "/tmp/neonvm-x", {}, {}, "autoscale-qemu");
  EXPECT_TRUE(Contains(a, {"-run-with", "user=autoscale-qemu"}));
  EXPECT_TRUE(Contains(
      a, {"-sandbox", "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"}));

  spec.incoming = true;
  a = QemuCommandLine(spec, "/tmp/neonvm-x");
  EXPECT_TRUE(Contains(a, {"-incoming", "defer"}));
  EXPECT_FALSE(Contains(a, {"-S"}));

  // The agent token reaches the guest through fw_cfg from the runtime directory: its value is
  // nowhere on the command line (which every host user can read in /proc), and in particular not
  // on the guest's kernel command line (which every guest process can).
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(a, " "), "-fw_cfg"));
  spec.agent_token = "a-secret-token-of-the-vm";
  a = QemuCommandLine(spec, "/tmp/neonvm-x");
  EXPECT_TRUE(
      Contains(a, {"-fw_cfg", "name=opt/autoscale/agent-token,file=/tmp/neonvm-x/agent-token"}));
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(a, " "), spec.agent_token));
  spec.agent_token.clear();

  // KVM frees what an unplugged vCPU used: the topology is the spec's.
  spec.accel = "kvm";
  a = QemuCommandLine(spec, "/tmp/neonvm-x");
  EXPECT_TRUE(Contains(a, {"-smp", "cpus=1,maxcpus=4,sockets=1,cores=4,threads=1"}));
  EXPECT_TRUE(Contains(a, {"-append", "console=ttyS0 quiet"}));
}

TEST(QemuCommandLine, DisksTapsCpuModelAndKernelArgs) {
  VmSpec spec;
  spec.name = "pg1";
  spec.accel = "tcg";
  spec.cpu_model = "Skylake-Client";
  spec.cpus_max = 2;
  spec.cpus_use = 2;
  spec.kernel = "/k/vmlinuz";
  spec.kernel_cmdline = "console=ttyS0";
  spec.kernel_args = {"autoscale.ip=10.77.0.50/24", "quiet"};
  spec.disks = {
      {.path = "/img/pg,1.img"},
      {.path = "/img/base.qcow2", .format = "qcow2", .read_only = true, .cache = "writeback"}};
  spec.taps = {{.bridge = "br0", .tap = "tapvm", .mac = "52:54:00:77:00:50"}, {.bridge = "br1"}};
  std::vector<std::string> a = QemuCommandLine(spec, "/tmp/d", {7, 9}, {{11, 12}, {13}});

  EXPECT_TRUE(Contains(a, {"-cpu", "Skylake-Client"}));
  // The cold-plugged CPU has the model's type, as hot-plugged ones do.
  EXPECT_TRUE(Contains(
      a, {"-device", "Skylake-Client-x86_64-cpu,id=cpu1,socket-id=0,core-id=1,thread-id=0"}));
  EXPECT_TRUE(
      Contains(a, {"-append", "console=ttyS0 autoscale.ip=10.77.0.50/24 quiet possible_cpus=2"}));
  // Images as descriptors in fdsets, named by their paths; a comma in a path is doubled, so QEMU
  // does not read it as the next option.
  EXPECT_TRUE(
      Contains(a, {"-add-fd", "fd=11,set=1,opaque=/img/pg,,1.img", "-add-fd",
                   "fd=12,set=1,opaque=/img/pg,,1.img", "-drive",
                   "file=/dev/fdset/1,file.locking=off,if=none,id=disk0,format=raw,cache=none",
                   "-device", "virtio-blk-pci,drive=disk0,id=vd0"}));
  EXPECT_TRUE(Contains(a, {"-add-fd", "fd=13,set=2,opaque=/img/base.qcow2", "-drive",
                           "file=/dev/fdset/2,file.locking=off,if=none,id=disk1,format=qcow2,"
                           "cache=writeback,readonly=on",
                           "-device", "virtio-blk-pci,drive=disk1,id=vd1"}));
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(a, " "), "file=/img"));
  EXPECT_TRUE(Contains(a, {"-netdev", "tap,id=tap0,fd=7,vhost=off", "-device",
                           "virtio-net-pci,netdev=tap0,mac=52:54:00:77:00:50,romfile="}));
  EXPECT_TRUE(Contains(a, {"-netdev", "tap,id=tap1,fd=9,vhost=off"}));
  // No user-mode network without forwards.
  EXPECT_FALSE(absl::StrContains(absl::StrJoin(a, " "), "user,id=net0"));

  // The derived MAC is stable (a migration target derives the same) and differs per interface.
  std::string mac = TapMac(spec, 1);
  EXPECT_TRUE(absl::StartsWith(mac, "52:54:00:")) << mac;
  EXPECT_EQ(mac.size(), 17u);
  EXPECT_EQ(mac, TapMac(spec, 1));
  EXPECT_TRUE(
      Contains(a, {"-device", absl::StrCat("virtio-net-pci,netdev=tap1,mac=", mac, ",romfile=")}));
  VmSpec other = spec;
  other.name = "pg2";
  EXPECT_NE(TapMac(other, 1), mac);

  // Kernel args alone make the whole command line.
  spec.kernel_cmdline.clear();
  spec.cpus_max = 255;
  a = QemuCommandLine(spec, "/tmp/d", {7, 9}, {{11, 12}, {13}});
  EXPECT_TRUE(Contains(a, {"-append", "autoscale.ip=10.77.0.50/24 quiet"}));
}

TEST(QemuCommandLine, CpuModelFollowsTheAccelerator) {
  VmSpec spec;
  spec.accel = "tcg";
  EXPECT_EQ(ResolvedCpuModel(spec), "qemu64");
  spec.accel = "kvm";
  EXPECT_EQ(ResolvedCpuModel(spec), "host");
  EXPECT_TRUE(Contains(QemuCommandLine(spec, "/tmp/d"), {"-cpu", "host"}));
  spec.cpu_model = "max";
  EXPECT_EQ(ResolvedCpuModel(spec), "max");
}

TEST(QemuCommandLine, FixedMemoryHasNoVirtioMemAndNoNetworkWithoutForwards) {
  VmSpec spec;
  spec.memory_slot_bytes = 512 * kMiB;
  std::vector<std::string> a = QemuCommandLine(spec, "/tmp/d");
  EXPECT_TRUE(Contains(a, {"-m", "size=536870912b"}));
  std::string line = absl::StrJoin(a, " ");
  EXPECT_FALSE(absl::StrContains(line, "virtio-mem"));
  EXPECT_FALSE(absl::StrContains(line, "-netdev"));
  EXPECT_FALSE(absl::StrContains(line, "-kernel"));
}

TEST(Validate, AcceptsTheDefaultsAndRefusesBadSpecs) {
  EXPECT_TRUE(Validate(VmSpec{}).ok());
  struct Case {
    const char* field;
    void (*mutate)(VmSpec&);
  };
  const Case cases[] = {
      {"name", [](VmSpec& s) { s.name = "a b"; }},
      {"accel", [](VmSpec& s) { s.accel = "hvf"; }},
      {"cpus_min", [](VmSpec& s) { s.cpus_min = 0; }},
      {"cpus_min", [](VmSpec& s) { s.cpus_min = 3, s.cpus_max = 2; }},
      {"cpus_use", [](VmSpec& s) { s.cpus_max = 4, s.cpus_use = 5; }},
      {"virtio_mem_block_bytes", [](VmSpec& s) { s.virtio_mem_block_bytes = 3 * kMiB; }},
      {"virtio_mem_block_bytes", [](VmSpec& s) { s.virtio_mem_block_bytes = kMiB; }},
      {"memory_slot_bytes", [](VmSpec& s) { s.memory_slot_bytes = 100 * kMiB; }},
      {"memory_slot_bytes", [](VmSpec& s) { s.memory_slot_bytes = 0; }},
      {"memory_slots_min", [](VmSpec& s) { s.memory_slots_min = 0; }},
      {"memory_slots_max", [](VmSpec& s) { s.memory_slots_max = 1 << 30; }},
      {"memory_slots_use", [](VmSpec& s) { s.memory_slots_max = 4, s.memory_slots_use = 0; }},
      {"need a kernel", [](VmSpec& s) { s.initrd = "/x"; }},
      {"cpu_milli", [](VmSpec& s) { s.cpus_max = 2, s.cpu_milli = 2001; }},
      {"cpu_milli", [](VmSpec& s) { s.cpu_milli = -1; }},
      {"cgroup.parent", [](VmSpec& s) { s.cgroup.parent = "neonvm"; }},
      {"cgroup.memory_overhead_bytes", [](VmSpec& s) { s.cgroup.memory_overhead_bytes = -1; }},
      {"ports out of range", [](VmSpec& s) { s.host_forwards = {{.guest_port = 70000}}; }},
      {"cpu_model", [](VmSpec& s) { s.cpu_model = "qemu64,+x2apic"; }},
      {"cpu_model host needs accel kvm", [](VmSpec& s) { s.accel = "tcg", s.cpu_model = "host"; }},
      {"kernel_args need a kernel", [](VmSpec& s) { s.kernel_args = {"quiet"}; }},
      {"kernel_args[1]",
       [](VmSpec& s) {
         s.kernel = "/k", s.kernel_args = {"quiet", "a b"};
       }},
      {"disks[0].path", [](VmSpec& s) { s.disks = {{}}; }},
      {"disks[1].format",
       [](VmSpec& s) {
         s.disks = {{.path = "/a"}, {.path = "/b", .format = "vmdk"}};
       }},
      {"disks[0].cache", [](VmSpec& s) { s.disks = {{.path = "/a", .cache = "fast"}}; }},
      {"taps[0].bridge", [](VmSpec& s) { s.taps = {{}}; }},
      {"taps[0].bridge", [](VmSpec& s) { s.taps = {{.bridge = "a-bridge-name-too-long"}}; }},
      {"taps[1].tap",
       [](VmSpec& s) {
         s.taps = {{.bridge = "br0", .tap = "t"}, {.bridge = "br0", .tap = "t"}};
       }},
      {"taps[0].mac", [](VmSpec& s) { s.taps = {{.bridge = "br0", .mac = "52:54:00:00:00"}}; }},
      {"taps[0].mac", [](VmSpec& s) { s.taps = {{.bridge = "br0", .mac = "01:00:5e:00:00:01"}}; }},
      {"user", [](VmSpec& s) { s.user = "qemu,user=root"; }},
      {"user", [](VmSpec& s) { s.user = "-root"; }},
      {"forwarded twice",
       [](VmSpec& s) {
         s.host_forwards = {{.guest_port = 22}, {.guest_port = 22}};
       }},
  };
  for (const Case& c : cases) {
    VmSpec spec;
    c.mutate(spec);
    absl::Status s = Validate(spec);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_TRUE(absl::StrContains(s.message(), c.field)) << s;
  }
}

TEST(QemuRunAs, RootDropsToTheDedicatedUserUnlessToldAndOthersHaveNothingToDrop) {
  VmSpec spec;
  spec.name = "ra";
  // Root: the named user, or root on request; a missing user is an error that says what to do.
  spec.user = "nobody";  // in every Debian base system
  absl::StatusOr<std::optional<RunAs>> r = QemuRunAs(spec, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->user, "nobody");
  EXPECT_NE((*r)->uid, 0u);
  spec.user = "root";
  r = QemuRunAs(spec, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  spec.user = "autoscale-no-such-user";
  r = QemuRunAs(spec, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  for (const char* part :
       {"VM ra", "\"autoscale-no-such-user\"", "scripts/setup", "--qemu_user=root"}) {
    EXPECT_TRUE(absl::StrContains(r.status().message(), part)) << part << ": " << r.status();
  }

  // Not root: QEMU runs as this process; another user cannot be had.
  spec.user = "";
  r = QemuRunAs(spec, 12345);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  spec.user = "root";
  EXPECT_TRUE(QemuRunAs(spec, 12345).ok());
  spec.user = "nobody";
  r = QemuRunAs(spec, 12345);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "only root")) << r.status();
}

TEST(Vm, AMissingUserIsNamedBeforeQemuStarts) {
  AUTOSCALE_REQUIRE_ROOT();
  VmSpec spec = NoGuestSpec("no-user");
  spec.user = "autoscale-no-such-user";
  testing::TempDir tmp;
  StartOptions options;
  options.runtime_dir = tmp.path() + "/run";
  std::filesystem::create_directories(options.runtime_dir);
  auto vm = Vm::Start(spec, options);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition) << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "autoscale-no-such-user")) << vm.status();
  EXPECT_FALSE(std::filesystem::exists(options.runtime_dir + "/qemu.log"));  // QEMU never ran
}

// The QEMU of a root process runs as the dedicated user, in a runtime directory of that user's
// that no one else may enter; the controller (root) still drives it over QMP.
TEST(Vm, DropsRootToItsUserInADirectoryOfItsOwn) {
  AUTOSCALE_REQUIRE_QEMU();
  AUTOSCALE_REQUIRE_QEMU_USER();
  absl::StatusOr<std::optional<RunAs>> user = QemuRunAs(VmSpec{});
  ASSERT_TRUE(user.ok() && user->has_value()) << user.status();
  const VmSpec spec = NoGuestSpec("drop");
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  const std::string uid = absl::StrCat((*user)->uid), gid = absl::StrCat((*user)->gid);
  EXPECT_EQ(testing::ProcStatus((*vm)->pid(), "Uid"), absl::StrJoin({uid, uid, uid, uid}, "\t"));
  EXPECT_EQ(testing::ProcStatus((*vm)->pid(), "Gid"), absl::StrJoin({gid, gid, gid, gid}, "\t"));
  EXPECT_EQ(testing::ProcStatus((*vm)->pid(), "Groups"), gid);
  EXPECT_EQ(testing::ProcStatus((*vm)->pid(), "Seccomp"), "2");
  struct stat dir;
  ASSERT_EQ(stat((*vm)->runtime_dir().c_str(), &dir), 0);
  EXPECT_EQ(dir.st_uid, (*user)->uid);
  EXPECT_EQ(dir.st_gid, (*user)->gid);
  EXPECT_EQ(dir.st_mode & 07777, 0700u);
  // Hotplug after the drop: a vCPU and virtio-mem memory.
  auto added = (*vm)->qmp().Execute(
      "device_add",
      absl::StrCat(R"({"driver":")", ResolvedCpuModel(spec),
                   R"(-x86_64-cpu","id":"cpu1","socket-id":0,"core-id":1,"thread-id":0})"));
  EXPECT_TRUE(added.ok()) << added.status();
  auto grown = (*vm)->qmp().Execute(
      "qom-set",
      R"({"path":"/machine/peripheral/vm0","property":"requested-size","value":268435456})");
  EXPECT_TRUE(grown.ok()) << grown.status();
  EXPECT_TRUE((*vm)->Stop().ok());
}

TEST(Vm, StartsPausedWithTheSpecsCpusAndMemoryAndStopsThroughQuit) {
  AUTOSCALE_REQUIRE_QEMU();
  VmSpec spec = NoGuestSpec("start-stop");
  spec.cpus_use = 3;
  spec.memory_slots_use = 2;
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::string dir = (*vm)->runtime_dir();
  EXPECT_LT((*vm)->serial_path().size(), 108u);
  EXPECT_TRUE(std::filesystem::exists((*vm)->qmp_path()));

  auto status = (*vm)->qmp().Execute("query-status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(absl::StrContains(*status, R"("status":"prelaunch")")) << *status;
  auto cpus = (*vm)->qmp().Execute("query-hotpluggable-cpus");
  ASSERT_TRUE(cpus.ok());
  EXPECT_TRUE(absl::StrContains(*cpus, R"("qom-path":"/machine/peripheral/cpu1")")) << *cpus;
  EXPECT_TRUE(absl::StrContains(*cpus, R"("qom-path":"/machine/peripheral/cpu2")")) << *cpus;
  EXPECT_FALSE(absl::StrContains(*cpus, "/machine/peripheral/cpu3")) << *cpus;
  auto mem = (*vm)->qmp().Execute("query-memory-devices");
  ASSERT_TRUE(mem.ok());
  EXPECT_TRUE(absl::StrContains(*mem, R"("requested-size":268435456)")) << *mem;

  ASSERT_TRUE((*vm)->Resume().ok());
  pid_t pid = (*vm)->pid();
  absl::Status stopped = (*vm)->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped;
  EXPECT_FALSE((*vm)->Running());
  EXPECT_EQ((*vm)->ExitDescription(), "exited with status 0");
  EXPECT_FALSE(ProcessExists(pid));  // reaped: not even a zombie
  EXPECT_TRUE((*vm)->Stop().ok());   // stopping twice is fine
  vm->reset();
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// One QEMU, no guest: the disks and the CPU model as QEMU itself reports them.
TEST(Vm, AttachesDisksAndUsesTheCpuModelForHotpluggableCpus) {
  AUTOSCALE_REQUIRE_QEMU();
  testing::TempDir dir;
  std::string data = dir.path() + "/data.img", base = dir.path() + "/base.img";
  for (const std::string& path : {data, base}) {
    std::ofstream(path).close();
    std::filesystem::resize_file(path, 4 * kMiB);
  }
  VmSpec spec = NoGuestSpec("disks");
  spec.cpu_model = "max";
  spec.cpus_use = 2;
  // writeback: the test's directory may be on a file system without O_DIRECT (tmpfs).
  spec.disks = {{.path = data, .cache = "writeback"},
                {.path = base, .read_only = true, .cache = "writeback"}};
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto block = (*vm)->qmp().Execute("query-block");
  ASSERT_TRUE(block.ok()) << block.status();
  EXPECT_TRUE(absl::StrContains(*block, R"("device":"disk0")")) << *block;
  EXPECT_TRUE(absl::StrContains(*block, R"("file":"/dev/fdset/1")")) << *block;
  EXPECT_TRUE(absl::StrContains(*block, R"("file":"/dev/fdset/2")")) << *block;
  // The images QEMU holds, which it never opened itself: read-write and read-only for the data
  // disk, read-only for the other.
  auto fdsets = (*vm)->qmp().Execute("query-fdsets");
  ASSERT_TRUE(fdsets.ok()) << fdsets.status();
  EXPECT_TRUE(absl::StrContains(*fdsets, absl::StrCat(R"("opaque":")", data, "\""))) << *fdsets;
  EXPECT_TRUE(absl::StrContains(*fdsets, absl::StrCat(R"("opaque":")", base, "\""))) << *fdsets;
  size_t disk1 = block->find(R"("device":"disk1")");
  ASSERT_NE(disk1, std::string::npos) << *block;
  EXPECT_NE(block->find(R"("ro":true)"), std::string::npos) << *block;
  EXPECT_EQ(block->find(R"("ro":true)"), block->rfind(R"("ro":true)")) << "only disk1 is read-only";
  auto cpus = (*vm)->qmp().Execute("query-hotpluggable-cpus");
  ASSERT_TRUE(cpus.ok()) << cpus.status();
  EXPECT_TRUE(absl::StrContains(*cpus, R"("type":"max-x86_64-cpu")")) << *cpus;
  EXPECT_FALSE(absl::StrContains(*cpus, "qemu64")) << *cpus;
  EXPECT_TRUE((*vm)->Stop().ok());
}

TEST(Vm, AMissingDiskIsNamedAndATargetSaysStorageMustBeShared) {
  VmSpec spec = NoGuestSpec("nodisk");
  spec.disks = {{.path = "/nonexistent/pg.img"}};
  auto vm = Vm::Start(spec);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "disks[0] /nonexistent/pg.img"))
      << vm.status();
  EXPECT_FALSE(absl::StrContains(vm.status().message(), "share")) << vm.status();
  spec.incoming = true;
  vm = Vm::Start(spec);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "hosts must share the storage"))
      << vm.status();
}

TEST(Vm, ForwardsAHostPortOnLoopback) {
  AUTOSCALE_REQUIRE_QEMU();
  VmSpec spec = NoGuestSpec("forward");
  spec.host_forwards = {{.guest_port = 7000}};
  auto vm = Vm::Start(spec);
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto port = (*vm)->HostPort(7000);
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_GT(*port, 0);
  // QEMU holds the port on 127.0.0.1.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(*port);
  EXPECT_NE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(errno, EADDRINUSE);
  close(fd);
  EXPECT_EQ((*vm)->HostPort(22).status().code(), absl::StatusCode::kNotFound);
}

TEST(Vm, DestructorKillsAndReaps) {
  AUTOSCALE_REQUIRE_QEMU();
  auto vm = Vm::Start(NoGuestSpec("destroy"));
  ASSERT_TRUE(vm.ok()) << vm.status();
  pid_t pid = (*vm)->pid();
  EXPECT_TRUE(ProcessExists(pid));
  vm->reset();
  EXPECT_FALSE(ProcessExists(pid));
}

TEST(Vm, StopKillsAQemuThatDoesNotQuit) {
  AUTOSCALE_REQUIRE_QEMU();
  auto vm = Vm::Start(NoGuestSpec("stuck"));
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_EQ(kill((*vm)->pid(), SIGSTOP), 0);
  absl::Status s = (*vm)->Stop(absl::Milliseconds(200));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "killed it")) << s;
  EXPECT_FALSE((*vm)->Running());
  EXPECT_EQ((*vm)->ExitDescription(), "killed by signal 9");
  EXPECT_FALSE(ProcessExists((*vm)->pid()));
}

TEST(Vm, ReportsQemuStartErrorsWithItsLog) {
  AUTOSCALE_REQUIRE_QEMU();
  VmSpec spec = NoGuestSpec("bad-device");
  spec.extra_args = {"-device", "no-such-device"};
  auto vm = Vm::Start(spec);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "exited with status 1 before QMP was up"))
      << vm.status();
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "no-such-device")) << vm.status();

  spec = NoGuestSpec("no-binary");
  spec.qemu = "/nonexistent/qemu";
  EXPECT_EQ(Vm::Start(spec).status().code(), absl::StatusCode::kNotFound);

  spec = NoGuestSpec("bad-spec");
  spec.cpus_use = 9;
  EXPECT_EQ(Vm::Start(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Vm, RefusesARuntimeDirectoryTooLongForSockets) {
  AUTOSCALE_REQUIRE_QEMU();
  StartOptions options;
  options.runtime_dir = "/tmp/" + std::string(110, 'd');
  auto vm = Vm::Start(NoGuestSpec("long"), options);
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(vm.status().message(), "too long")) << vm.status();
}

// A helper process starts a VM and is then killed: QEMU must not outlive it.
TEST(Vm, QemuDiesWithTheProcessThatStartedIt) {
  AUTOSCALE_REQUIRE_QEMU();
  testing::TempDir dir;  // the helper's runtime directory: it cannot clean up after a SIGKILL
  // QEMU as root: one that drops root outlives a killed launcher (see vm.h).
  std::string helper =
      testing::Runfile("neonvm/launcher/start_vm_helper") + " " + dir.path() + " root";
  FILE* p = popen(helper.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[64] = {0};
  ASSERT_NE(fgets(line, sizeof(line), p), nullptr) << "the helper printed nothing";
  pid_t helper_pid = 0, qemu_pid = 0;
  ASSERT_EQ(sscanf(line, "%d %d", &helper_pid, &qemu_pid), 2) << line;
  // Nothing reaps QEMU now but init, which may be slow to: check its state, not its existence.
  auto qemu_alive = [qemu_pid] {
    std::ifstream stat(absl::StrCat("/proc/", qemu_pid, "/stat"));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
  };
  EXPECT_TRUE(qemu_alive());
  ASSERT_EQ(kill(helper_pid, SIGKILL), 0);
  pclose(p);
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (qemu_alive() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(qemu_alive()) << "QEMU " << qemu_pid << " outlived the process that started it";
  if (qemu_alive()) kill(qemu_pid, SIGKILL);
}

}  // namespace
}  // namespace autoscale::neonvm::launcher
