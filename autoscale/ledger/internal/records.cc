#include "autoscale/ledger/internal/records.h"

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config_proto.h"

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

absl::Status CheckWholeUnits(const Resources& r, const Resources& cu, absl::string_view what) {
  RETURN_IF_ERROR(CheckAmount(r, what));
  if (r.milli_cpu % cu.milli_cpu != 0 || r.memory_bytes % cu.memory_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", r.ToString(), " is not a whole number of compute units of ", cu.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckName(absl::string_view value, absl::string_view what, bool may_be_empty) {
  if (value.empty() && !may_be_empty)
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (value.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", value.substr(0, 32), "...\" has ",
                                                   value.size(), " bytes; at most ", kMaxNameBytes,
                                                   " are taken"));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(const Resources& r, const Resources& cu, const Bounds& b,
                       absl::string_view what) {
  RETURN_IF_ERROR(CheckWholeUnits(r, cu, what));
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
  RETURN_IF_ERROR(CheckName(s.name, "VM name"));
  RETURN_IF_ERROR(CheckComputeUnit(s.compute_unit));
  RETURN_IF_ERROR(CheckBounds(s.bounds, s.compute_unit));
  RETURN_IF_ERROR(CheckOvercommit(s.overcommit));
  return CheckSize(s.initial, s.compute_unit, s.bounds, "initial size");
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("ledger store: ", what));
}

namespace {

MigrationRecord MigrationRecordOf(const MigrationOrder& o) {
  MigrationRecord r;
  r.set_id(o.id);
  r.set_vm(o.vm);
  r.set_source_node(o.source_node);
  r.set_target_node(o.target_node);
  r.set_target_agent_address(o.target_agent_address);
  if (o.started != absl::InfinitePast()) r.set_started_unix_micros(absl::ToUnixMicros(o.started));
  return r;
}

// An amount read from the log, checked like CheckAmount.
absl::StatusOr<Resources> AmountFromProto(const api::v1::Resources& p, absl::string_view what) {
  Resources r{p.milli_cpu(), p.memory_bytes()};
  if (absl::Status s = CheckAmount(r, what); !s.ok()) return Corrupt(s.message());
  return r;
}

}  // namespace

LedgerRecord ToRecord(const change::NodeRegistered& c) {
  LedgerRecord out;
  NodeRecord& r = *out.mutable_node_registered();
  r.set_name(std::string(c.name));
  *r.mutable_total() = core::ToProto(c.total);
  r.set_watermark(c.watermark);
  r.set_agent_address(std::string(c.agent_address));
  r.set_cordoned(c.cordoned);
  r.set_draining(c.draining);
  return out;
}

LedgerRecord ToRecord(const change::NodeRemoved& c) {
  LedgerRecord out;
  out.mutable_node_removed()->set_node(std::string(c.node));
  out.mutable_node_removed()->set_forced(c.forced);
  return out;
}

LedgerRecord ToRecord(const change::VmBoundsChanged& c) {
  LedgerRecord out;
  VmBoundsChanged& r = *out.mutable_vm_bounds_changed();
  r.set_vm(std::string(c.vm));
  r.mutable_bounds()->set_min_cu(c.bounds.min_cu);
  r.mutable_bounds()->set_max_cu(c.bounds.max_cu);
  return out;
}

LedgerRecord ToRecord(const change::VmPlaced& c) {
  LedgerRecord out;
  *out.mutable_vm_placed() = VmRecordOf(c.name, c.node, c.vm);
  return out;
}

LedgerRecord ToRecord(const change::VmResized& c) {
  LedgerRecord out;
  VmResized& r = *out.mutable_vm_resized();
  r.set_node(std::string(c.node));
  r.set_vm(std::string(c.vm));
  *r.mutable_permit() = core::ToProto(c.permit);
  *r.mutable_requested() = core::ToProto(c.requested);
  return out;
}

LedgerRecord ToRecord(const change::VmReleased& c) {
  LedgerRecord out;
  out.set_vm_released(std::string(c.vm));
  return out;
}

LedgerRecord ToRecord(const change::MigrationStarted& c) {
  LedgerRecord out;
  *out.mutable_migration_started() = MigrationRecordOf(c.order);
  return out;
}

LedgerRecord ToRecord(const change::MigrationEnded& c) {
  LedgerRecord out;
  MigrationEnded& r = *out.mutable_migration_ended();
  r.set_id(c.id);
  r.set_vm(std::string(c.vm));
  r.set_succeeded(c.succeeded);
  return out;
}

absl::StatusOr<change::NodeRegistered> FromRecord(const NodeRecord& r) {
  if (r.name().empty()) return Corrupt("node record without a name");
  ASSIGN_OR_RETURN(Resources total, AmountFromProto(r.total(), "node total"));
  if (!(r.watermark() > 0 && r.watermark() <= 1)) {
    return Corrupt(absl::StrCat("node ", r.name(), ": watermark ", r.watermark()));
  }
  if (r.draining() && !r.cordoned()) {
    return Corrupt(absl::StrCat("node ", r.name(), ": draining but not cordoned"));
  }
  return change::NodeRegistered{.name = r.name(),
                                .total = total,
                                .watermark = r.watermark(),
                                .agent_address = r.agent_address(),
                                .cordoned = r.cordoned(),
                                .draining = r.draining()};
}

absl::StatusOr<change::NodeRemoved> FromRecord(const NodeRemoved& r) {
  if (r.node().empty()) return Corrupt("node removal without a node");
  return change::NodeRemoved{.node = r.node(), .forced = r.forced()};
}

absl::StatusOr<change::VmBoundsChanged> FromRecord(const VmBoundsChanged& r) {
  if (r.vm().empty()) return Corrupt("bounds change without a VM");
  return change::VmBoundsChanged{.vm = r.vm(),
                                 .bounds = {r.bounds().min_cu(), r.bounds().max_cu()}};
}

absl::StatusOr<change::VmPlaced> FromRecord(const VmRecord& r) {
  const std::string ctx = absl::StrCat("VM ", r.name());
  if (r.name().empty()) return Corrupt("VM record without a name");
  // A VM is placed before it migrates (a snapshot's migrations are replayed after).
  if (r.has_migration()) return Corrupt(absl::StrCat(ctx, ": placed while migrating"));
  change::VmPlaced c{.name = r.name(), .node = r.node(), .vm = {}};
  VmState& vm = c.vm;
  vm.bounds = {r.bounds().min_cu(), r.bounds().max_cu()};
  vm.cu = {r.compute_unit().milli_cpu(), r.compute_unit().memory_bytes()};
  ASSIGN_OR_RETURN(vm.permit, AmountFromProto(r.permit(), "permit"));
  ASSIGN_OR_RETURN(vm.requested, AmountFromProto(r.requested(), "requested"));
  vm.overcommit = {r.cpu_overcommit_milli(), r.memory_overcommit_milli()};
  vm.migratable = r.migratable();
  vm.created = absl::FromUnixMicros(r.created_unix_micros());
  absl::Status valid = CheckComputeUnit(vm.cu);
  if (valid.ok()) valid = CheckBounds(vm.bounds, vm.cu);
  if (valid.ok()) valid = CheckOvercommit(vm.overcommit);
  if (valid.ok()) valid = CheckWholeUnits(vm.permit, vm.cu, "permit");
  if (!valid.ok()) return Corrupt(absl::StrCat(ctx, ": ", valid.message()));
  return c;
}

absl::StatusOr<change::VmResized> FromRecord(const VmResized& r) {
  ASSIGN_OR_RETURN(Resources permit, AmountFromProto(r.permit(), "permit"));
  ASSIGN_OR_RETURN(Resources requested, AmountFromProto(r.requested(), "requested"));
  return change::VmResized{
      .node = r.node(), .vm = r.vm(), .permit = permit, .requested = requested};
}

absl::StatusOr<change::MigrationStarted> FromRecord(const MigrationRecord& r) {
  if (r.vm().empty() || r.source_node().empty() || r.target_node().empty()) {
    return Corrupt(absl::StrCat("migration ", r.id(), " without a VM, source or target"));
  }
  return change::MigrationStarted{{.id = r.id(),
                                   .vm = r.vm(),
                                   .source_node = r.source_node(),
                                   .target_node = r.target_node(),
                                   .target_agent_address = r.target_agent_address(),
                                   .started = r.started_unix_micros() == 0
                                                  ? absl::InfinitePast()
                                                  : absl::FromUnixMicros(r.started_unix_micros())}};
}

absl::StatusOr<change::MigrationEnded> FromRecord(const MigrationEnded& r) {
  return change::MigrationEnded{.id = r.id(), .vm = r.vm(), .succeeded = r.succeeded()};
}

NodeRecord NodeRecordOf(const Node& n) {
  NodeRecord r;
  r.set_name(n.name);
  *r.mutable_total() = core::ToProto(n.total);
  r.set_watermark(n.watermark_fraction);
  r.set_agent_address(n.agent_address);
  r.set_cordoned(n.cordoned);
  r.set_draining(n.draining);
  return r;
}

VmRecord VmRecordOf(absl::string_view name, absl::string_view node, const VmState& vm) {
  VmRecord v;
  v.set_name(std::string(name));
  v.set_node(std::string(node));
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
