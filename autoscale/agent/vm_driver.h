// VmDriver: how the agent resizes a VM (a seam). The QMP driver hot-plugs vCPUs and virtio-mem
// memory into a QEMU VM (neonvm/hotplug); the simulator and tests bring their own.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<VmDriver> vm,
//                    NewQmpVmDriver("unix:/run/vm1/agent.qmp.sock", spec, compute_unit));
//   ASSIGN_OR_RETURN(core::Resources reached, vm->Resize({1500, 3 << 30}));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/core/resources.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::agent {

class VmDriver {
 public:
  virtual ~VmDriver() = default;
  // The VM's size now.
  virtual absl::StatusOr<core::Resources> Current() = 0;
  // Brings the VM to `target` and returns the size reached. On error the VM may have moved part
  // of the way; Current() says where it is.
  virtual absl::StatusOr<core::Resources> Resize(const core::Resources& target) = 0;
  // The VM's QMP connection, for live migration; nullptr for drivers without one.
  virtual neonvm::qmp::QmpClient* qmp() { return nullptr; }
};

// Over QMP at `qmp_address`, for a VM started from `spec`. vCPUs are whole: a target of 1500
// milli-CPU plugs 2 vCPUs (like the reference, which gives the guest ceil(use) vCPUs); memory
// must be a whole number of the spec's slots. The size reported keeps the milli-CPU asked for
// while the plugged vCPUs match it; at start, a VM whose memory is k compute units and whose vCPUs
// match k compute units reports k compute units.
absl::StatusOr<std::unique_ptr<VmDriver>> NewQmpVmDriver(const std::string& qmp_address,
                                                         const neonvm::launcher::VmSpec& spec,
                                                         const core::Resources& compute_unit);

neonvm::launcher::VmSpec SpecFromProto(const api::VmLaunchSpec& spec);
api::VmLaunchSpec SpecToProto(const neonvm::launcher::VmSpec& spec);

// Whole vCPUs for `milli_cpu` (rounded up).
int CpusFor(int64_t milli_cpu);

}  // namespace autoscale::agent
