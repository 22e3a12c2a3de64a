#include "autoscale/agent/vm_driver.h"

#include "absl/synchronization/mutex.h"
#include "autoscale/base/status_macros.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::agent {
namespace {

using neonvm::hotplug::VmSize;

class QmpVmDriver final : public VmDriver {
 public:
  QmpVmDriver(std::unique_ptr<neonvm::qmp::QmpClient> qmp, const neonvm::launcher::VmSpec& spec,
              const core::Resources& compute_unit)
      : qmp_(std::move(qmp)), spec_(spec), compute_unit_(compute_unit), resizer_(*qmp_, spec_) {}

  absl::StatusOr<core::Resources> Current() override {
    ASSIGN_OR_RETURN(VmSize size, resizer_.Current());
    absl::MutexLock lock(&mu_);
    return FromSize(size);
  }

  absl::StatusOr<core::Resources> Resize(const core::Resources& target) override {
    {
      absl::MutexLock lock(&mu_);
      asked_milli_cpu_ = target.milli_cpu;
    }
    absl::StatusOr<VmSize> reached =
        resizer_.Resize({.cpus = CpusFor(target.milli_cpu), .memory_bytes = target.memory_bytes});
    if (!reached.ok()) return reached.status();
    absl::MutexLock lock(&mu_);
    return FromSize(*reached);
  }

  neonvm::qmp::QmpClient* qmp() override { return qmp_.get(); }

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

  std::unique_ptr<neonvm::qmp::QmpClient> qmp_;
  const neonvm::launcher::VmSpec spec_;
  const core::Resources compute_unit_;
  neonvm::hotplug::VmResizer resizer_;
  absl::Mutex mu_;
  // The milli-CPU of the last resize asked for (0: none yet).
  int64_t asked_milli_cpu_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

int CpusFor(int64_t milli_cpu) { return static_cast<int>((milli_cpu + 999) / 1000); }

absl::StatusOr<std::unique_ptr<VmDriver>> NewQmpVmDriver(const std::string& qmp_address,
                                                         const neonvm::launcher::VmSpec& spec,
                                                         const core::Resources& compute_unit) {
  RETURN_IF_ERROR(neonvm::launcher::Validate(spec));
  ASSIGN_OR_RETURN(std::unique_ptr<neonvm::qmp::QmpClient> qmp,
                   neonvm::qmp::QmpClient::Connect(qmp_address));
  return std::make_unique<QmpVmDriver>(std::move(qmp), spec, compute_unit);
}

neonvm::launcher::VmSpec SpecFromProto(const api::VmLaunchSpec& p) {
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
  return s;
}

api::VmLaunchSpec SpecToProto(const neonvm::launcher::VmSpec& s) {
  api::VmLaunchSpec p;
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
  return p;
}

}  // namespace autoscale::agent
