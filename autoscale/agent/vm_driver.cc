#include "autoscale/agent/vm_driver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/status_macros.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/migration/migration.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::agent {
namespace {

using neonvm::hotplug::VmSize;

// The resizer's options for a VM whose QEMU runs in `cgroup` (null: none): every resize sets
// the quota to the milli-CPU asked for.
neonvm::hotplug::VmResizerOptions ResizerOptions(neonvm::launcher::HostCgroup* cgroup) {
  neonvm::hotplug::VmResizerOptions options;
  if (cgroup != nullptr) {
    options.set_cpu_limit = [cgroup](int milli) { return cgroup->SetCpuLimit(milli); };
  }
  return options;
}

class QmpVmDriver final : public VmDriver {
 public:
  QmpVmDriver(std::shared_ptr<neonvm::qmp::QmpClient> qmp, const neonvm::launcher::VmSpec& spec,
              std::unique_ptr<neonvm::launcher::HostCgroup> cgroup,
              const core::Resources& compute_unit, int64_t granted_milli_cpu)
      : qmp_(std::move(qmp)),
        spec_(spec),
        cgroup_(std::move(cgroup)),
        compute_unit_(compute_unit),
        resizer_(*qmp_, spec_, ResizerOptions(cgroup_.get())),
        asked_milli_cpu_(granted_milli_cpu) {}

  // A VM the agent has not resized yet still has the quota it was started with: when its
  // vCPUs match its grant, the quota is brought to the grant (a VM started with 1 vCPU for a
  // 250m permit would otherwise use a whole CPU until its first resize).
  absl::Status ApplyGrantedQuota() {
    int64_t granted;
    {
      absl::MutexLock lock(&mu_);
      granted = asked_milli_cpu_;
    }
    if (cgroup_ == nullptr || granted <= 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(VmSize size, resizer_.Current());
    if (CpusFor(granted) != size.cpus) return absl::OkStatus();
    return cgroup_->SetCpuLimit(static_cast<int>(granted));
  }

  absl::StatusOr<core::Resources> Current() override {
    ASSIGN_OR_RETURN(VmSize size, resizer_.Current());
    absl::MutexLock lock(&mu_);
    return FromSize(size);
  }

  absl::StatusOr<core::Resources> Resize(const core::Resources& target,
                                         absl::Duration timeout) override {
    {
      absl::MutexLock lock(&mu_);
      asked_milli_cpu_ = target.milli_cpu;
    }
    // The timeout may change between resizes (a config reload): a resizer per resize. With a
    // host cgroup it keeps QEMU's quota at target.milli_cpu, ordered with the vCPU changes so
    // that the VM never has more than the larger of the two sizes.
    neonvm::hotplug::VmResizerOptions options = ResizerOptions(cgroup_.get());
    options.timeout = timeout;
    neonvm::hotplug::VmResizer resizer(*qmp_, spec_, std::move(options));
    absl::StatusOr<VmSize> reached =
        resizer.Resize({.cpus = CpusFor(target.milli_cpu), .memory_bytes = target.memory_bytes},
                       static_cast<int>(target.milli_cpu));
    if (!reached.ok()) return reached.status();
    absl::MutexLock lock(&mu_);
    return FromSize(*reached);
  }

 private:
  // The milli-CPU of `size`: what was last asked for if the plugged vCPUs match it, else what the
  // memory says in whole compute units if the vCPUs match that, else the vCPUs themselves.
  core::Resources FromSize(const VmSize& size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int64_t milli = int64_t{size.cpus} * 1000;
    if (asked_milli_cpu_ > 0 && CpusFor(asked_milli_cpu_) == size.cpus) {
      milli = asked_milli_cpu_;
    } else if (size.memory_bytes % compute_unit_.memory_bytes == 0) {
      int64_t units = size.memory_bytes / compute_unit_.memory_bytes;
      if (CpusFor(units * compute_unit_.milli_cpu) == size.cpus) {
        milli = units * compute_unit_.milli_cpu;
      }
    }
    return {milli, size.memory_bytes};
  }

  const std::shared_ptr<neonvm::qmp::QmpClient> qmp_;
  const neonvm::launcher::VmSpec spec_;
  // QEMU's host cgroup (opened, owned by the process that started QEMU); null: no quota.
  const std::unique_ptr<neonvm::launcher::HostCgroup> cgroup_;
  const core::Resources compute_unit_;
  neonvm::hotplug::VmResizer resizer_;
  absl::Mutex mu_;
  // The milli-CPU of the last resize asked for, or granted before this driver (0: not known).
  int64_t asked_milli_cpu_ ABSL_GUARDED_BY(mu_);
};

// The migration source over the driver's QMP connection, which it keeps open.
class SharedQmpSource final : public neonvm::migration::Source {
 public:
  SharedQmpSource(std::shared_ptr<neonvm::qmp::QmpClient> qmp, const neonvm::launcher::VmSpec& spec)
      : qmp_(std::move(qmp)), source_(neonvm::migration::NewQmpSource(*qmp_, spec)) {}

  std::string name() const override { return source_->name(); }
  absl::StatusOr<std::string> RunState(absl::Duration t) override { return source_->RunState(t); }
  absl::StatusOr<bool> KvmEnabled(absl::Duration t) override { return source_->KvmEnabled(t); }
  absl::StatusOr<neonvm::migration::Devices> CaptureDevices(absl::Duration t) override {
    return source_->CaptureDevices(t);
  }
  absl::Status Configure(const neonvm::migration::MigrationOptions& o, absl::Duration t) override {
    return source_->Configure(o, t);
  }
  absl::Status Start(const std::string& uri, absl::Duration t) override {
    return source_->Start(uri, t);
  }
  absl::StatusOr<neonvm::migration::Progress> Query(absl::Duration t) override {
    return source_->Query(t);
  }
  absl::Status StartPostcopy(absl::Duration t) override { return source_->StartPostcopy(t); }
  absl::Status Cancel(absl::Duration t) override { return source_->Cancel(t); }
  absl::Status Resume(absl::Duration t) override { return source_->Resume(t); }
  absl::Status Quit(absl::Duration t) override { return source_->Quit(t); }

 private:
  const std::shared_ptr<neonvm::qmp::QmpClient> qmp_;
  const std::unique_ptr<neonvm::migration::Source> source_;
};

class QemuIncomingVm final : public IncomingVm {
 public:
  QemuIncomingVm(std::unique_ptr<neonvm::launcher::Vm> vm, std::string uri)
      : vm_(std::move(vm)), uri_(std::move(uri)) {}

  const std::string& uri() const override { return uri_; }
  absl::Status AwaitArrival(bool expect_running, absl::Duration timeout) override {
    return neonvm::migration::AwaitIncoming(*vm_, expect_running, timeout);
  }
  absl::Status Stop() override { return vm_->Stop(absl::Seconds(2)); }
  std::string qmp_address() const override { return "unix:" + vm_->agent_qmp_path(); }
  absl::StatusOr<std::string> MonitorAddress(int guest_port) const override {
    ASSIGN_OR_RETURN(int port, vm_->HostPort(guest_port));
    return absl::StrCat("127.0.0.1:", port);
  }
  std::string serial_path() const override { return vm_->serial_path(); }
  std::string host_cgroup() const override {
    return vm_->cgroup() != nullptr ? vm_->cgroup()->path() : "";
  }
  std::string agent_token_file() const override {
    if (vm_->spec().agent_token.empty()) return "";
    return absl::StrCat(vm_->runtime_dir(), "/", neonvm::launcher::kAgentTokenFile);
  }

 private:
  const std::unique_ptr<neonvm::launcher::Vm> vm_;
  const std::string uri_;
};

class QemuVmDriverFactory final : public VmDriverFactory {
 public:
  QemuVmDriverFactory(neonvm::launcher::HostCgroupSpec incoming_cgroup, std::string tls_dir,
                      std::string migration_address, std::string qemu_user)
      : incoming_cgroup_(std::move(incoming_cgroup)),
        tls_dir_(std::move(tls_dir)),
        migration_address_(std::move(migration_address)),
        qemu_user_(std::move(qemu_user)) {}

  absl::StatusOr<OpenedVm> Open(const api::v1::VmConfig& vm, const core::Resources& compute_unit,
                                int64_t granted_milli_cpu,
                                absl::Duration request_timeout) override {
    const neonvm::launcher::VmSpec spec = SpecFromProto(vm.spec());
    RETURN_IF_ERROR(neonvm::launcher::Validate(spec));
    std::unique_ptr<neonvm::launcher::HostCgroup> cgroup;
    if (!vm.host_cgroup().empty()) {
      absl::StatusOr<std::unique_ptr<neonvm::launcher::HostCgroup>> opened =
          neonvm::launcher::HostCgroup::Open(vm.host_cgroup());
      if (!opened.ok()) return Annotate(opened.status(), "VM " + vm.name());
      cgroup = *std::move(opened);
    }
    neonvm::qmp::QmpClientOptions qmp_options;
    qmp_options.connect_timeout = request_timeout;
    qmp_options.command_timeout = request_timeout;
    ASSIGN_OR_RETURN(std::shared_ptr<neonvm::qmp::QmpClient> qmp,
                     neonvm::qmp::QmpClient::Connect(vm.qmp(), qmp_options));
    auto driver = std::make_unique<QmpVmDriver>(qmp, spec, std::move(cgroup), compute_unit,
                                                granted_milli_cpu);
    RETURN_IF_ERROR(Annotate(driver->ApplyGrantedQuota(),
                             absl::StrCat("VM ", vm.name(), ": setting its granted CPU quota")));
    OpenedVm opened;
    opened.driver = std::move(driver);
    opened.migration = std::make_unique<SharedQmpSource>(qmp, spec);
    return opened;
  }

  absl::StatusOr<std::unique_ptr<IncomingVm>> StartIncoming(
      const api::v1::PrepareIncomingRequest& request, const std::string& source_node) override {
    const api::v1::VmConfig& config = request.vm();
    const neonvm::launcher::VmSpec spec = IncomingSpec(request, incoming_cgroup_, qemu_user_);
    RETURN_IF_ERROR(Annotate(neonvm::launcher::Validate(spec), "incoming VM " + config.name()));
    neonvm::migration::Devices devices;
    for (const std::string& args : request.cpu_device_add_args()) {
      devices.cpu_device_add_args.push_back(args);
    }
    if (request.has_virtio_mem()) {
      devices.virtio_mem_requested_bytes = request.virtio_mem_requested_bytes();
    }
    ASSIGN_OR_RETURN(std::unique_ptr<neonvm::launcher::Vm> vm,
                     neonvm::migration::StartIncoming(spec, devices));
    neonvm::migration::IncomingTls tls;
    if (!tls_dir_.empty()) {
      tls.dir = tls_dir_;
      tls.source_dn = absl::StrCat("CN=node-", source_node);
    }
    ASSIGN_OR_RETURN(std::string uri, neonvm::migration::Listen(*vm, config.allow_postcopy(),
                                                                migration_address_, tls));
    return std::make_unique<QemuIncomingVm>(std::move(vm), std::move(uri));
  }

 private:
  const neonvm::launcher::HostCgroupSpec incoming_cgroup_;
  const std::string tls_dir_;
  const std::string migration_address_;
  const std::string qemu_user_;
};

}  // namespace

int CpusFor(int64_t milli_cpu) { return static_cast<int>((milli_cpu + 999) / 1000); }

std::unique_ptr<VmDriverFactory> NewQemuVmDriverFactory(
    neonvm::launcher::HostCgroupSpec incoming_cgroup, std::string migration_tls_dir,
    std::string migration_address, std::string qemu_user) {
  return std::make_unique<QemuVmDriverFactory>(std::move(incoming_cgroup),
                                               std::move(migration_tls_dir),
                                               std::move(migration_address), std::move(qemu_user));
}

neonvm::launcher::VmSpec IncomingSpec(const api::v1::PrepareIncomingRequest& request,
                                      const neonvm::launcher::HostCgroupSpec& cgroup,
                                      const std::string& qemu_user) {
  neonvm::launcher::VmSpec spec = SpecFromProto(request.vm().spec());
  spec.cgroup = cgroup;
  spec.user = qemu_user;
  // The source's QEMU handed the guest this token through fw_cfg: the same device here.
  spec.agent_token = request.agent_token();
  // The source's milli-CPU now: the target's quota from its first instruction. Validate refuses
  // one beyond cpus_max.
  spec.cpu_milli = static_cast<int>(
      std::clamp<int64_t>(request.current().milli_cpu(), 0, int64_t{spec.cpus_max} * 1000 + 1));
  return spec;
}

neonvm::launcher::VmSpec SpecFromProto(const api::v1::VmLaunchSpec& p) {
  neonvm::launcher::VmSpec s;
  if (!p.name().empty()) s.name = p.name();
  s.accel = p.accel();
  s.cpus_min = p.cpus_min();
  s.cpus_max = p.cpus_max();
  s.cpus_use = p.cpus_use();
  if (p.memory_slot_bytes() > 0) s.memory_slot_bytes = p.memory_slot_bytes();
  s.memory_slots_min = p.memory_slots_min();
  s.memory_slots_max = p.memory_slots_max();
  s.memory_slots_use = p.memory_slots_use();
  s.kernel = p.kernel();
  s.initrd = p.initrd();
  s.kernel_cmdline = p.kernel_cmdline();
  for (int port : p.forwarded_guest_ports()) s.host_forwards.push_back({.guest_port = port});
  s.cpu_model = p.cpu_model();
  s.kernel_args.assign(p.kernel_args().begin(), p.kernel_args().end());
  for (const api::v1::VmLaunchSpec::Disk& d : p.disks()) {
    neonvm::launcher::Disk disk;
    disk.path = d.path();
    if (!d.format().empty()) disk.format = d.format();
    disk.read_only = d.read_only();
    if (!d.cache().empty()) disk.cache = d.cache();
    s.disks.push_back(disk);
  }
  for (const api::v1::VmLaunchSpec::Tap& t : p.taps()) {
    s.taps.push_back({.bridge = t.bridge(), .tap = t.tap(), .mac = t.mac()});
  }
  return s;
}

api::v1::VmLaunchSpec SpecToProto(const neonvm::launcher::VmSpec& s) {
  api::v1::VmLaunchSpec p;
  p.set_name(s.name);
  p.set_accel(s.accel);
  p.set_cpus_min(s.cpus_min);
  p.set_cpus_max(s.cpus_max);
  p.set_cpus_use(s.cpus_use);
  p.set_memory_slot_bytes(s.memory_slot_bytes);
  p.set_memory_slots_min(s.memory_slots_min);
  p.set_memory_slots_max(s.memory_slots_max);
  p.set_memory_slots_use(s.memory_slots_use);
  p.set_kernel(s.kernel);
  p.set_initrd(s.initrd);
  p.set_kernel_cmdline(s.kernel_cmdline);
  for (const auto& f : s.host_forwards) p.add_forwarded_guest_ports(f.guest_port);
  p.set_cpu_model(s.cpu_model);
  for (const std::string& arg : s.kernel_args) p.add_kernel_args(arg);
  for (const neonvm::launcher::Disk& d : s.disks) {
    api::v1::VmLaunchSpec::Disk* disk = p.add_disks();
    disk->set_path(d.path);
    disk->set_format(d.format);
    disk->set_read_only(d.read_only);
    disk->set_cache(d.cache);
  }
  for (const neonvm::launcher::TapInterface& t : s.taps) {
    api::v1::VmLaunchSpec::Tap* tap = p.add_taps();
    tap->set_bridge(t.bridge);
    tap->set_tap(t.tap);
    tap->set_mac(t.mac);
  }
  return p;
}

}  // namespace autoscale::agent
