#include "autoscale/ledger/internal/records.h"

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"

namespace autoscale::ledger::internal {

absl::Status CheckAmount(const Resources& r, absl::string_view what) {
  if (r.milli_cpu < 0 || r.memory_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", r.ToString(), " is negative"));
  }
  if (r.milli_cpu > kMaxAmount || r.memory_bytes > kMaxAmount) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", r.ToString(), " is larger than the ledger accepts (2^50)"));
  }
  return absl::OkStatus();
}

absl::Status CheckComputeUnit(const Resources& cu) {
  RETURN_IF_ERROR(CheckAmount(cu, "compute unit"));
  if (cu.milli_cpu == 0 || cu.memory_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute unit ", cu.ToString(), ": both resources must be > 0"));
  }
  return absl::OkStatus();
}

absl::Status CheckBounds(const Bounds& b, const Resources& cu) {
  if (b.min_cu < 1 || b.min_cu > b.max_cu) {
    return absl::InvalidArgumentError(
        absl::StrCat("bounds ", b.min_cu, "..", b.max_cu, " CU: need 1 <= min <= max"));
  }
  if (cu.milli_cpu > kMaxAmount / b.max_cu || cu.memory_bytes > kMaxAmount / b.max_cu) {
    return absl::InvalidArgumentError(
        absl::StrCat("bounds ", b.min_cu, "..", b.max_cu, " CU of ", cu.ToString(),
                     ": the largest size is larger than the ledger accepts (2^50)"));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(const Resources& r, const Resources& cu, const Bounds& b,
                       absl::string_view what) {
  RETURN_IF_ERROR(CheckAmount(r, what));
  if (r.milli_cpu % cu.milli_cpu != 0 || r.memory_bytes % cu.memory_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", r.ToString(), " is not a whole number of compute units of ", cu.ToString()));
  }
  if (r.AnyLessThan(cu * b.min_cu)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", r.ToString(),
                                                   " is below the VM's bounds (min ", b.min_cu,
                                                   " CU = ", (cu * b.min_cu).ToString(), ")"));
  }
  if (r.AnyGreaterThan(cu * b.max_cu)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", r.ToString(),
                                                   " is above the VM's bounds (max ", b.max_cu,
                                                   " CU = ", (cu * b.max_cu).ToString(), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckOvercommit(const Overcommit& o) {
  for (uint32_t f : {o.cpu_milli, o.memory_milli}) {
    if (f < 1000 || f > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("overcommit factor ", f, "/1000 is outside [1000, 100000]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPlaceVmRequest(const PlaceVmRequest& s) {
  if (s.name.empty()) return absl::InvalidArgumentError("VM name is empty");
  RETURN_IF_ERROR(CheckComputeUnit(s.compute_unit));
  RETURN_IF_ERROR(CheckBounds(s.bounds, s.compute_unit));
  RETURN_IF_ERROR(CheckOvercommit(s.overcommit));
  return CheckSize(s.initial, s.compute_unit, s.bounds, "initial size");
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("ledger store: ", what));
}

absl::StatusOr<Resources> AmountFromProto(const api::Resources& p, absl::string_view what) {
  Resources r{p.milli_cpu(), p.memory_bytes()};
  RETURN_IF_ERROR(CheckAmount(r, what));
  return r;
}

MigrationRecord MigrationRecordOf(const MigrationOrder& o) {
  MigrationRecord r;
  r.set_id(o.id);
  r.set_vm(o.vm);
  r.set_source_node(o.source_node);
  r.set_target_node(o.target_node);
  r.set_target_agent_address(o.target_agent_address);
  return r;
}

NodeRecord NodeRecordOf(const Node& n) {
  NodeRecord r;
  r.set_name(n.name);
  *r.mutable_total() = core::ToProto(n.total);
  r.set_watermark(n.watermark_fraction);
  r.set_agent_address(n.agent_address);
  return r;
}

VmRecord VmRecordOf(const std::string& name, const std::string& node, const Vm& vm) {
  VmRecord v;
  v.set_name(name);
  v.set_node(node);
  v.mutable_bounds()->set_min_cu(vm.bounds.min_cu);
  v.mutable_bounds()->set_max_cu(vm.bounds.max_cu);
  v.mutable_compute_unit()->set_milli_cpu(vm.cu.milli_cpu);
  v.mutable_compute_unit()->set_memory_bytes(vm.cu.memory_bytes);
  *v.mutable_permit() = core::ToProto(vm.permit);
  *v.mutable_requested() = core::ToProto(vm.requested);
  v.set_cpu_overcommit_milli(vm.overcommit.cpu_milli);
  v.set_memory_overcommit_milli(vm.overcommit.memory_milli);
  v.set_migratable(vm.migratable);
  v.set_created_unix_micros(absl::ToUnixMicros(vm.created));
  if (vm.migration) *v.mutable_migration() = MigrationRecordOf(*vm.migration);
  return v;
}

}  // namespace autoscale::ledger::internal
