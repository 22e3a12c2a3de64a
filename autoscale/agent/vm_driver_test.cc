// The QEMU VM driver against real QEMU without a guest: the milli-CPU it reports for a VM whose
// partial vCPU was granted before its runner (re)started, and the host cgroup's CPU quota it
// keeps at the milli-CPU granted and resized to. And against a QMP peer that greets and then never
// answers: every request ends at the configured timeout.
#include "autoscale/agent/vm_driver.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/hotplug/resizer.h"

namespace autoscale::agent {
namespace {

// A migration target is started from the source's spec as a proto: disks, taps, the CPU model
// and kernel args must survive the trip, or the target would lack the source's devices.
TEST(SpecProto, RoundTripsDisksTapsCpuModelAndKernelArgs) {
  neonvm::launcher::VmSpec spec = testing::NoGuestSpec("pg");
  spec.cpu_model = "max";
  spec.kernel = "/k";
  spec.kernel_args = {"autoscale.ip=10.77.0.50/24"};
  spec.disks = {{.path = "/d/pg.img", .format = "qcow2", .read_only = true, .cache = "writeback"}};
  spec.taps = {{.bridge = "br0", .tap = "tapvm", .mac = "52:54:00:77:00:50"}};
  neonvm::launcher::VmSpec back = SpecFromProto(SpecToProto(spec));
  EXPECT_EQ(back.cpu_model, "max");
  EXPECT_EQ(back.kernel_args, spec.kernel_args);
  ASSERT_EQ(back.disks.size(), 1u);
  EXPECT_EQ(back.disks[0].path, "/d/pg.img");
  EXPECT_EQ(back.disks[0].format, "qcow2");
  EXPECT_TRUE(back.disks[0].read_only);
  EXPECT_EQ(back.disks[0].cache, "writeback");
  ASSERT_EQ(back.taps.size(), 1u);
  EXPECT_EQ(back.taps[0].bridge, "br0");
  EXPECT_EQ(back.taps[0].tap, "tapvm");
  EXPECT_EQ(back.taps[0].mac, "52:54:00:77:00:50");

  // Empty proto fields take the launcher's defaults.
  api::v1::VmLaunchSpec p;
  p.add_disks()->set_path("/d/x.img");
  back = SpecFromProto(p);
  EXPECT_EQ(back.disks[0].format, "raw");
  EXPECT_EQ(back.disks[0].cache, "none");
}

TEST(QemuVmDriver, AGrantedPartialVcpuSurvivesReopening) {
  AUTOSCALE_REQUIRE_QEMU();
  auto vm = neonvm::launcher::Vm::Start(testing::NoGuestSpec("driver"));
  ASSERT_TRUE(vm.ok()) << vm.status();
  // Granted 1250m/256 MiB: 2 vCPUs run it (plugged here without a guest to acknowledge them).
  neonvm::hotplug::VmResizerOptions no_guest;
  no_guest.guest_acknowledges_cpus = false;
  neonvm::hotplug::VmResizer resizer((*vm)->qmp(), (*vm)->spec(), no_guest);
  ASSERT_TRUE(resizer.Resize({2, 256 * kMiB}).ok());

  api::v1::VmConfig config;
  config.set_name("driver");
  config.set_qmp("unix:" + (*vm)->agent_qmp_path());
  *config.mutable_spec() = SpecToProto((*vm)->spec());
  const core::Resources cu{.milli_cpu = 250, .memory_bytes = 256 * kMiB};
  std::unique_ptr<VmDriverFactory> factory = NewQemuVmDriverFactory();

  // A runner restarted with its grant known reads it back exactly.
  absl::StatusOr<OpenedVm> opened =
      factory->Open(config, cu, /*granted_milli_cpu=*/1250, absl::Seconds(10));
  ASSERT_TRUE(opened.ok()) << opened.status();
  absl::StatusOr<core::Resources> now = opened->driver->Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, (core::Resources{1250, 256 * kMiB}));
  opened->driver.reset();
  opened->migration.reset();

  // Unknown, it reads what the vCPUs show (1 CU of memory does not match 2 vCPUs).
  opened = factory->Open(config, cu, /*granted_milli_cpu=*/0, absl::Seconds(10));
  ASSERT_TRUE(opened.ok()) << opened.status();
  now = opened->driver->Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->milli_cpu, 2000);
  // A grant the vCPUs no longer match (3 vCPUs for 2500m) is not believed.
  opened->driver.reset();
  opened->migration.reset();
  opened = factory->Open(config, cu, /*granted_milli_cpu=*/2500, absl::Seconds(10));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->driver->Current()->milli_cpu, 2000);
}

TEST(QemuVmDriver, KeepsTheHostCgroupQuotaAtTheMilliCpu) {
  AUTOSCALE_REQUIRE_QEMU();
  auto vm = neonvm::launcher::Vm::Start(testing::NoGuestSpec("quota"));
  ASSERT_TRUE(vm.ok()) << vm.status();
  if ((*vm)->cgroup() == nullptr) GTEST_SKIP() << "no writable host cgroups (needs root)";
  neonvm::launcher::HostCgroup& cgroup = *(*vm)->cgroup();
  // Started with 1 vCPU's quota; 2 vCPUs plugged (no guest to acknowledge them).
  neonvm::hotplug::VmResizerOptions no_guest;
  no_guest.guest_acknowledges_cpus = false;
  neonvm::hotplug::VmResizer resizer((*vm)->qmp(), (*vm)->spec(), no_guest);
  ASSERT_TRUE(resizer.Resize({2, 256 * kMiB}).ok());
  ASSERT_EQ(*cgroup.CpuQuota(), 100000);

  api::v1::VmConfig config;
  config.set_name("quota");
  config.set_qmp("unix:" + (*vm)->agent_qmp_path());
  config.set_host_cgroup(cgroup.path());
  *config.mutable_spec() = SpecToProto((*vm)->spec());
  std::unique_ptr<VmDriverFactory> factory = NewQemuVmDriverFactory();
  absl::StatusOr<OpenedVm> opened = factory->Open(
      config, {.milli_cpu = 250, .memory_bytes = 256 * kMiB}, 1250, absl::Seconds(10));
  ASSERT_TRUE(opened.ok()) << opened.status();
  // Opening brings the quota to the grant its 2 vCPUs run.
  EXPECT_EQ(*cgroup.CpuQuota(), 125000);
  // Each resize sets it (within 2 vCPUs: nothing to plug, which needs no guest).
  ASSERT_TRUE(opened->driver->Resize({1500, 256 * kMiB}, absl::Seconds(10)).ok());
  EXPECT_EQ(*cgroup.CpuQuota(), 150000);
  ASSERT_TRUE(opened->driver->Resize({1250, 256 * kMiB}, absl::Seconds(10)).ok());
  EXPECT_EQ(*cgroup.CpuQuota(), 125000);
  opened->driver.reset();
  opened->migration.reset();
  EXPECT_TRUE(std::filesystem::is_directory(cgroup.cpu_dir())) << "the driver removed the group";

  // A group that is not there is an error naming the VM, not a VM without a quota.
  config.set_host_cgroup(cgroup.path() + "-gone");
  absl::Status gone = factory->Open(config, {250, 256 * kMiB}, 0, absl::Seconds(10)).status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
  EXPECT_TRUE(absl::StrContains(gone.message(), "VM quota")) << gone;
  EXPECT_TRUE(absl::StrContains(gone.message(), "-gone")) << gone;
}

TEST(IncomingSpec, RunsInTheAgentsGroupAsItsUserWithTheSourcesQuota) {
  api::v1::PrepareIncomingRequest request;
  *request.mutable_vm()->mutable_spec() = SpecToProto(testing::NoGuestSpec("in"));
  request.mutable_current()->set_milli_cpu(2500);
  neonvm::launcher::HostCgroupSpec cgroup;
  cgroup.parent = "/node-vms";
  cgroup.memory_overhead_bytes = 64 * kMiB;
  neonvm::launcher::VmSpec spec = IncomingSpec(request, cgroup, "qemu-of-b");
  EXPECT_EQ(spec.cpu_milli, 2500);
  EXPECT_EQ(spec.user, "qemu-of-b");  // the agent's --qemu_user, nothing of the peer's
  EXPECT_EQ(spec.cgroup.parent, "/node-vms");
  EXPECT_EQ(spec.cgroup.memory_overhead_bytes, 64 * kMiB);
  EXPECT_TRUE(neonvm::launcher::Validate(spec).ok());
  EXPECT_EQ(spec.agent_token, "") << "none sent, none handed to the guest";
  // The source's agent token: the target's QEMU hands the guest the same one (fw_cfg).
  request.set_agent_token("the-vm-token-0123456789");
  EXPECT_EQ(IncomingSpec(request, cgroup).agent_token, "the-vm-token-0123456789");
  // A source that claims more than the spec allows is refused, not capped silently.
  request.mutable_current()->set_milli_cpu(int64_t{1} << 40);
  EXPECT_FALSE(neonvm::launcher::Validate(IncomingSpec(request, cgroup)).ok());
}

// A QMP peer on a unix socket that greets, takes the capabilities and then reads every command
// and answers none (a QEMU that hangs).
class SilentQmp {
 public:
  SilentQmp() {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string path = dir_.path() + "/qmp.sock";
    std::strcpy(a.sun_path, path.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(fd_, 1), 0);
    address_ = "unix:" + path;
    thread_ = std::thread([this] {
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      const std::string greeting =
          R"({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""},)"
          R"( "capabilities": []}})"
          "\n";
      (void)!send(c, greeting.data(), greeting.size(), MSG_NOSIGNAL);
      std::string in;
      char b[4096];
      bool negotiated = false;
      ssize_t n;
      while ((n = recv(c, b, sizeof(b), 0)) > 0) {
        in.append(b, n);
        if (!negotiated && in.find('\n') != std::string::npos) {
          negotiated = true;
          const std::string ok = R"({"return": {}, "id": 1})"
                                 "\n";
          (void)!send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
        }
      }
      close(c);
    });
  }
  ~SilentQmp() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  const std::string& address() const { return address_; }

 private:
  testing::TempDir dir_{"silentqmp"};
  int fd_ = -1;
  std::string address_;
  std::thread thread_;
};

// The request timeout (the timings' vmRequestTimeout) bounds each request to the VM: reading its
// size and resizing it. Before, Resize waited for the resizer's own 10 s and every QMP command
// for the client's default, whatever the config said.
TEST(QemuVmDriver, AVmThatNeverAnswersTimesOutAtTheRequestTimeout) {
  SilentQmp qmp;
  api::v1::VmConfig config;
  config.set_name("silent");
  config.set_qmp(qmp.address());
  api::v1::VmLaunchSpec& spec = *config.mutable_spec();
  spec.set_name("silent");
  spec.set_cpus_min(1);
  spec.set_cpus_max(2);
  spec.set_cpus_use(1);
  spec.set_memory_slot_bytes(256 * kMiB);
  spec.set_memory_slots_min(1);
  spec.set_memory_slots_max(2);
  spec.set_memory_slots_use(1);
  const core::Resources cu{.milli_cpu = 1000, .memory_bytes = 256 * kMiB};
  std::unique_ptr<VmDriverFactory> factory = NewQemuVmDriverFactory();
  absl::StatusOr<OpenedVm> opened = factory->Open(config, cu, 0, absl::Milliseconds(100));
  ASSERT_TRUE(opened.ok()) << opened.status();
  // The errors name the timeout they ran into (the default would be 10 s).
  absl::StatusOr<core::Resources> now = opened->driver->Current();
  EXPECT_EQ(now.status().code(), absl::StatusCode::kDeadlineExceeded) << now.status();
  EXPECT_TRUE(absl::StrContains(now.status().message(), "timed out after 100ms")) << now.status();
  absl::StatusOr<core::Resources> reached =
      opened->driver->Resize({2000, 512 * kMiB}, absl::Milliseconds(100));
  EXPECT_EQ(reached.status().code(), absl::StatusCode::kDeadlineExceeded) << reached.status();
  EXPECT_TRUE(absl::StrContains(reached.status().message(), "100ms")) << reached.status();
  opened->driver.reset();
  opened->migration.reset();
}

}  // namespace
}  // namespace autoscale::agent
