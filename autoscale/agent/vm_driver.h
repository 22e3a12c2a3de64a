// The agent's seams to the VMs it manages, each with a QEMU implementation here and a fake in
// autoscale/testing/fake_vm.h (so the agent is tested without QEMU):
//
//   - VmDriver: one VM's size, read and changed (the QEMU one hot-plugs vCPUs and virtio-mem
//     memory over QMP, neonvm/hotplug).
//   - neonvm::migration::Source: the same VM as the source of a live migration.
//   - IncomingVm: a VM this node's agent started as a migration target.
//   - VmDriverFactory: makes the first two for a configured VM, and starts incoming VMs.
//
//   std::unique_ptr<VmDriverFactory> factory = NewQemuVmDriverFactory();
//   ASSIGN_OR_RETURN(OpenedVm vm, factory->Open(vm_config, compute_unit, 0, absl::Seconds(10)));
//   ASSIGN_OR_RETURN(core::Resources reached,
//                    vm.driver->Resize({1500, 3 << 30}, absl::Seconds(10)));
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/agent.pb.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/core/resources.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/migration/source.h"

namespace autoscale::agent {

class VmDriver {
 public:
  virtual ~VmDriver() = default;
  // The VM's size now. Unavailable when the VM cannot be reached (its runner is restarted).
  virtual absl::StatusOr<core::Resources> Current() = 0;
  // Brings the VM to `target` within `timeout` and returns the size reached. On error
  // (DEADLINE_EXCEEDED after the timeout) the VM may have moved part of the way; Current() says
  // where it is.
  virtual absl::StatusOr<core::Resources> Resize(const core::Resources& target,
                                                 absl::Duration timeout) = 0;
};

// A VM started on this node as the target of a live migration: waiting for the migration stream
// until the source has sent it, then running the VM. Destroying it stops the VM.
class IncomingVm {
 public:
  virtual ~IncomingVm() = default;
  // Where the source sends the VM (a QEMU migration URI).
  virtual const std::string& uri() const = 0;
  // Waits until the state has arrived and the VM left "inmigrate"; with `expect_running` it must
  // then run.
  virtual absl::Status AwaitArrival(bool expect_running, absl::Duration timeout) = 0;
  // Stops the VM; OK once it no longer runs (also when it had already ended).
  virtual absl::Status Stop() = 0;
  // How the agent reaches it once it manages it: its QMP address (for VmDriverFactory::Open), its
  // monitor's address (`guest_port` forwarded to the host), its console.
  virtual std::string qmp_address() const = 0;
  virtual absl::StatusOr<std::string> MonitorAddress(int guest_port) const = 0;
  virtual std::string serial_path() const = 0;
  // Its QEMU's host cgroup (VmConfig.host_cgroup); empty: none.
  virtual std::string host_cgroup() const = 0;
  // The file its QEMU read the VM's agent token from (VmConfig.agent_token_file); empty: none.
  virtual std::string agent_token_file() const { return ""; }
};

// A configured VM opened by the agent: the driver its runner resizes it with, and its source
// side for migrations away. Both reach the same VM; either may be used while the other is.
struct OpenedVm {
  std::unique_ptr<VmDriver> driver;
  std::unique_ptr<neonvm::migration::Source> migration;
};

class VmDriverFactory {
 public:
  virtual ~VmDriverFactory() = default;
  // Opens the VM of `vm` (its QMP address and launch spec). `compute_unit` and
  // `granted_milli_cpu` (the VM's permit in the ledger; 0: not known) let the driver report
  // milli-CPU that whole vCPUs do not show: a VM granted 1250m runs 2 vCPUs, and must be read
  // back as 1250m, not 2000m, when its runner restarts. Each request to the VM (a QMP command)
  // gets `request_timeout` (the timings' vmRequestTimeout). Unavailable when the VM cannot be
  // reached.
  virtual absl::StatusOr<OpenedVm> Open(const api::v1::VmConfig& vm,
                                        const core::Resources& compute_unit,
                                        int64_t granted_milli_cpu,
                                        absl::Duration request_timeout) = 0;
  // Starts an incoming VM for `request` (the VM's config as this node has it, and the source's
  // devices) and makes it listen for the migration from node `source_node` (the order's).
  virtual absl::StatusOr<std::unique_ptr<IncomingVm>> StartIncoming(
      const api::v1::PrepareIncomingRequest& request, const std::string& source_node) = 0;
};

// QEMU: Open connects to the VM's QMP socket; StartIncoming starts QEMU from the request's spec
// (neonvm/migration StartIncoming and Listen). vCPUs are whole: a target of 1500 milli-CPU plugs
// 2 vCPUs (like the reference, which gives the guest ceil(use) vCPUs); memory must be a whole
// number of the spec's slots. The size reported keeps the milli-CPU asked for (at start: granted)
// while the plugged vCPUs match it; else a VM whose memory is k compute units and whose vCPUs
// match k compute units reports k compute units.
//
// CPU quota: a VM whose config names its host cgroup (VmConfig.host_cgroup) has its QEMU's quota
// set to the milli-CPU of every resize (ordered with the vCPU changes by the resizer), and on
// Open to the granted milli-CPU when its vCPUs match it. Incoming VMs run in a host cgroup of
// `incoming_cgroup` (their own, made before QEMU starts) with the source's current milli-CPU as
// quota.
//
// TLS: with `migration_tls_dir` (neonvm::migration::MakeTlsDir of this node's certificate) an
// incoming VM takes only a TLS stream from the QEMU of the order's source node, whose
// certificate's distinguished name must be "CN=node-<source>" (the README's recipe).
//
// Where: an incoming VM listens on `migration_address` (a host or an IP address of this node,
// "[...]" around IPv6), on a port its QEMU picks ("tcp:10.0.0.7:41234"), so that the stream from
// another host reaches it; empty: on a unix socket in its runtime directory (source and target
// on one machine). Incoming VMs' QEMUs run as `qemu_user` (neonvm::launcher::VmSpec::user: "" is
// the dedicated user when this process is root), never as a peer says.
std::unique_ptr<VmDriverFactory> NewQemuVmDriverFactory(
    neonvm::launcher::HostCgroupSpec incoming_cgroup = {}, std::string migration_tls_dir = "",
    std::string migration_address = "", std::string qemu_user = "");

// The launch spec of the migration target for `request`: the VM's spec, in a host cgroup of
// `cgroup`, with the quota the source has now (request.current), its QEMU run as `qemu_user`.
neonvm::launcher::VmSpec IncomingSpec(const api::v1::PrepareIncomingRequest& request,
                                      const neonvm::launcher::HostCgroupSpec& cgroup,
                                      const std::string& qemu_user = "");

neonvm::launcher::VmSpec SpecFromProto(const api::v1::VmLaunchSpec& spec);
api::v1::VmLaunchSpec SpecToProto(const neonvm::launcher::VmSpec& spec);

// Whole vCPUs for `milli_cpu` (rounded up).
int CpusFor(int64_t milli_cpu);

}  // namespace autoscale::agent
