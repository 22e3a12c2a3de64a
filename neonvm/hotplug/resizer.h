// Resizing a running VM in place: `VmResizer::Resize(target)` brings the VM's vCPUs and memory to a
// target size over QMP and reports the size reached.
//
//   VmResizer resizer(vm->qmp(), vm->spec());
//   absl::StatusOr<VmSize> reached = resizer.Resize({.cpus = 3, .memory_bytes = 1 << 30});
//   if (!reached.ok()) { ... resizer.Current() says where the VM is now ... }
//
// CPUs: added with device_add into the free slot with the lowest core id (device id
// "cpu<core>"); with a guest, an add counts once the guest acknowledges it (ACPI _OST insert
// success; the guest's init then onlines it). Removed from the highest core id down with
// device_del; a removal is complete when the guest reports the eject done (ACPI _OST) and the CPU
// is gone from query-hotpluggable-cpus (QEMU never sends DEVICE_DELETED for a CPU). Only CPUs
// added as devices can be removed; the first `cpus_min` cannot.
//
// Memory: the virtio-mem device's requested-size, then waiting until its plugged size equals it
// (polled: QEMU throttles MEMORY_DEVICE_SIZE_CHANGE events). The guest's driver does the plugging,
// so a VM without a guest never changes its memory.
//
// Idempotent: resizing to the current size only queries. Thread-safe: one resize at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::hotplug {

// The size of a VM: whole vCPUs and bytes of memory.
struct VmSize {
  int cpus = 0;
  int64_t memory_bytes = 0;

  bool operator==(const VmSize& o) const {
    return cpus == o.cpus && memory_bytes == o.memory_bytes;
  }
  bool operator!=(const VmSize& o) const { return !(*this == o); }
};

// "2 CPUs, 768 MiB".
std::string ToString(const VmSize& size);

struct VmResizerOptions {
  // Bounds one Resize call.
  absl::Duration timeout = absl::Seconds(10);
  // Whether a guest OS runs that acknowledges added CPUs. False for a VM without one (paused or
  // without a kernel): an added CPU then counts as soon as QEMU has it.
  bool guest_acknowledges_cpus = true;
  // How often memory and CPU removal progress is polled.
  absl::Duration poll_interval = absl::Milliseconds(10);
  // Sets the VM's CPU quota in milli-CPU (e.g. launcher::Vm::SetCpuLimit); unset: the VM has no
  // quota. Resize calls it so that QEMU never gets more CPU time than the permit allows: growing,
  // after the vCPUs are plugged; shrinking (or the same vCPUs), before any is unplugged.
  std::function<absl::Status(int milli)> set_cpu_limit;
};

class VmResizer {
 public:
  // `qmp` and `spec` (the VM's bounds and slot size) must outlive the VmResizer.
  VmResizer(qmp::QmpClient& qmp, const launcher::VmSpec& spec, VmResizerOptions options = {});

  // The VM's size as QEMU reports it: plugged vCPUs, and boot memory plus plugged virtio-mem.
  absl::StatusOr<VmSize> Current();

  // Brings the VM to `target` and returns the size reached (== target). Errors:
  //   - InvalidArgument: `target` is outside the spec's bounds or not a whole number of slots
  //     (nothing is changed);
  //   - DeadlineExceeded: the guest did not finish within the timeout (the message says how far
  //     it got; Current() gives the exact size). Memory's request is then taken back to what was
  //     plugged, so the guest stops changing it: book what Current() reports after the error;
  //   - FailedPrecondition: QEMU or the guest refused (e.g. CPU removal without a guest OS, or a
  //     guest that cannot eject a CPU);
  //   - Unavailable: the QMP connection is lost.
  absl::StatusOr<VmSize> Resize(const VmSize& target);
  // The same with a CPU quota of `cpu_milli` (options.set_cpu_limit), which must need
  // target.cpus vCPUs: ceil(cpu_milli / 1000) == target.cpus. Resize(target) sets
  // target.cpus * 1000.
  absl::StatusOr<VmSize> Resize(const VmSize& target, int cpu_milli);

 private:
  struct Cpu;
  absl::StatusOr<std::vector<Cpu>> QueryCpus();
  absl::Status AddCpu(const Cpu& cpu, absl::Time deadline);
  absl::Status RemoveCpu(const Cpu& cpu, absl::Time deadline);
  absl::Status ResizeCpus(int target, absl::Time deadline);
  absl::Status ResizeMemory(int64_t target, absl::Time deadline);
  absl::StatusOr<int64_t> PluggedMemory();
  std::string Where() const;

  qmp::QmpClient& qmp_;
  const launcher::VmSpec& spec_;
  const VmResizerOptions options_;
  absl::Mutex resize_mu_;  // One Resize at a time.
};

}  // namespace autoscale::neonvm::hotplug
