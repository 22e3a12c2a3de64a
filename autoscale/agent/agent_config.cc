#include "autoscale/agent/agent_config.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/base/proto_duration.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config_proto.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::agent {

absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFromProto(
    const api::v1::MigrationSettings& s) {
  neonvm::migration::MigrationOptions o;
  o.auto_converge = s.auto_converge();
  const absl::Duration downtime = FromProto(s.downtime_limit());
  if (downtime != absl::ZeroDuration()) {
    // QEMU takes whole milliseconds up to 2000 s.
    if (downtime < absl::Milliseconds(1) || downtime > absl::Seconds(2000)) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration.downtimeLimit: must be within 1ms..2000s, got ",
                       absl::FormatDuration(downtime)));
    }
    o.downtime_limit = downtime;
  }
  if (s.max_bandwidth_bytes_per_second() < 0) {
    return absl::InvalidArgumentError("migration.maxBandwidthBytesPerSecond: must not be negative");
  }
  if (s.max_bandwidth_bytes_per_second() > 0) {
    o.max_bandwidth_bytes_per_second = s.max_bandwidth_bytes_per_second();
  }
  if (s.postcopy_after_passes() > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "migration.postcopyAfterPasses: at most 1000, got ", s.postcopy_after_passes()));
  }
  if (s.postcopy_after_passes() > 0) {
    o.postcopy_after_passes = static_cast<int>(s.postcopy_after_passes());
  }
  return o;
}

absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFor(
    const api::v1::MigrationSettings& settings, const api::v1::VmConfig& vm, bool kvm) {
  ASSIGN_OR_RETURN(neonvm::migration::MigrationOptions o, MigrationOptionsFromProto(settings));
  if (kvm) {
    o.allow_postcopy = vm.has_allow_postcopy() && vm.allow_postcopy();
    return o;
  }
  if (vm.has_allow_postcopy() && !vm.allow_postcopy()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM ", vm.name(),
        " runs under TCG, where precopy loses writes of a guest that keeps writing memory, and "
        "its allowPostcopy is false: not migrated"));
  }
  o.allow_postcopy = true;
  o.postcopy_after_passes = 1;
  return o;
}

namespace {

// One VM of `c` (in `field`): its bounds, scaling and spec, and bounds its spec can hold.
absl::Status ValidateVm(const api::v1::AgentConfig& c, const core::Resources& cu,
                        const api::v1::VmConfig& vm, const std::string& field) {
  RETURN_IF_ERROR(core::BoundsFromProto(vm.bounds(), (field + ".bounds").c_str()).status());
  RETURN_IF_ERROR(core::ResolveScalingConfig(c.scaling(), vm.scaling()).status());
  const neonvm::launcher::VmSpec spec = SpecFromProto(vm.spec());
  RETURN_IF_ERROR(Annotate(neonvm::launcher::Validate(spec), field + ".spec"));
  if (cu.memory_bytes % spec.memory_slot_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".spec.memorySlotBytes: the compute unit's memory (", cu.memory_bytes,
                     ") must be a whole number of slots (", spec.memory_slot_bytes, ")"));
  }
  // The VM cannot grow past what its QEMU was started with: a larger maximum would be granted
  // by the scheduler and then fail every resize.
  const int64_t max_cu = vm.bounds().max_cu();  // at most core::kMaxCu: the products fit
  if (max_cu * cu.milli_cpu > int64_t{spec.cpus_max} * 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".bounds.maxCu: VM ", vm.name(), " may grow to ", max_cu, " CU (",
                     max_cu * cu.milli_cpu, "m) but its QEMU takes at most ", spec.cpus_max,
                     " vCPUs (spec.cpusMax)"));
  }
  const int64_t max_memory = int64_t{spec.memory_slots_max} * spec.memory_slot_bytes;
  if (max_cu * cu.memory_bytes > max_memory) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".bounds.maxCu: VM ", vm.name(), " may grow to ", max_cu, " CU (",
                     max_cu * cu.memory_bytes, " bytes of memory) but its QEMU takes at most ",
                     max_memory, " (spec.memorySlotsMax x spec.memorySlotBytes)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateAgentConfig(const api::v1::AgentConfig& c) {
  if (c.node().empty()) return absl::InvalidArgumentError("node: required");
  if (c.scheduler_address().empty()) {
    return absl::InvalidArgumentError("schedulerAddress: required");
  }
  ASSIGN_OR_RETURN(const core::Resources cu, core::ComputeUnitFromProto(c.compute_unit()));
  RETURN_IF_ERROR(core::ResolveScalingConfig(c.scaling()).status());
  RETURN_IF_ERROR(core::ResolveTimings(c.timings()).status());
  RETURN_IF_ERROR(MigrationOptionsFromProto(c.migration()).status());
  for (bool incoming : {false, true}) {
    const auto& vms = incoming ? c.incoming_vms() : c.vms();
    std::set<std::string> names;
    for (int i = 0; i < vms.size(); ++i) {
      const std::string field = absl::StrCat(incoming ? "incomingVms[" : "vms[", i, "]");
      const api::v1::VmConfig& vm = vms[i];
      if (vm.name().empty()) return absl::InvalidArgumentError(field + ".name: required");
      if (!names.insert(vm.name()).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".name: '", vm.name(), "' appears twice"));
      }
      // An incoming VM's QEMU is started by this agent, which knows where it is.
      if (!incoming && vm.qmp().empty()) {
        return absl::InvalidArgumentError(field + ".qmp: required");
      }
      RETURN_IF_ERROR(ValidateVm(c, cu, vm, field));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<api::v1::AgentConfig> LoadAgentConfig(const std::string& path) {
  api::v1::AgentConfig c;
  RETURN_IF_ERROR(ReadProtoFile(path, c));
  RETURN_IF_ERROR(Annotate(ValidateAgentConfig(c), path));
  return c;
}

}  // namespace autoscale::agent
