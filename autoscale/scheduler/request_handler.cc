#include "autoscale/scheduler/request_handler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "glog/logging.h"

namespace autoscale::scheduler {
namespace {

using core::Resources;

constexpr const char* kMethodNames[] = {
    "Request",         "RegisterNode", "PlaceVm",    "ReleaseVm",     "GetMigrationOrders",
    "ReportMigration", "ListNodes",    "ListVms",    "GetStatus",     "UpdateNode",
    "CordonNode",      "DrainNode",    "RemoveNode", "UpdateVmBounds"};

absl::Status CheckVersion(api::v1::ProtocolVersion v, std::string_view call) {
  if (v == api::v1::PROTOCOL_VERSION_1) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      absl::string_view(call.data(), call.size()), ": protocol version ", static_cast<int>(v),
      " is not supported; this scheduler speaks ", static_cast<int>(api::v1::PROTOCOL_VERSION_1)));
}

// A name for an error message: a peer's too-long one is cut short (it is refused anyway).
std::string Shown(const std::string& name) {
  if (name.size() <= ledger::kMaxNameBytes) return name;
  return absl::StrCat(absl::string_view(name).substr(0, 32), "...");
}

// A name or an address from a peer: present (unless `may_be_empty`) and at most
// ledger::kMaxNameBytes. The call in the error is cut short, since it may hold the name itself.
absl::Status CheckName(const std::string& value, const char* field, std::string_view call,
                       bool may_be_empty = false) {
  const absl::string_view where(call.data(), call.size());
  if (value.empty() && !may_be_empty) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, " is empty"));
  }
  if (value.size() > ledger::kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, " has ", value.size(),
                                                   " bytes; at most ", ledger::kMaxNameBytes,
                                                   " are taken"));
  }
  return absl::OkStatus();
}

// Checked before anything else reads the names.
absl::Status Required(const std::string& value, const char* field, std::string_view call) {
  return CheckName(value, field, call);
}

}  // namespace

api::v1::NodeState ToProto(const ledger::NodeInfo& n) {
  api::v1::NodeState p;
  p.set_node(n.name);
  *p.mutable_total() = core::ToProto(n.total);
  *p.mutable_reserved() = core::ToProto(n.reserved);
  *p.mutable_committed() = core::ToProto(n.committed);
  *p.mutable_migrating() = core::ToProto(n.migrating);
  *p.mutable_watermark() = core::ToProto(n.watermark);
  p.set_awaiting_agent(n.awaiting_agent);
  p.set_watermark_fraction(n.watermark_fraction);
  p.set_agent_address(n.agent_address);
  p.set_vm_count(n.vm_count);
  p.set_cordoned(n.cordoned);
  p.set_draining(n.draining);
  p.set_over_capacity(n.over_capacity);
  return p;
}

api::v1::MigrationOrder ToProto(const ledger::MigrationOrder& o) {
  api::v1::MigrationOrder p;
  p.set_id(o.id);
  p.set_vm(o.vm);
  p.set_source_node(o.source_node);
  p.set_target_node(o.target_node);
  p.set_target_agent_address(o.target_agent_address);
  if (o.started != absl::InfinitePast()) p.set_started_unix_micros(absl::ToUnixMicros(o.started));
  return p;
}

api::v1::VmState ToProto(const ledger::VmInfo& v) {
  api::v1::VmState p;
  p.set_vm(v.name);
  p.set_node(v.node);
  p.mutable_bounds()->set_min_cu(v.bounds.min_cu);
  p.mutable_bounds()->set_max_cu(v.bounds.max_cu);
  p.mutable_compute_unit()->set_milli_cpu(v.compute_unit.milli_cpu);
  p.mutable_compute_unit()->set_memory_bytes(v.compute_unit.memory_bytes);
  *p.mutable_permit() = core::ToProto(v.permit);
  *p.mutable_requested() = core::ToProto(v.requested);
  p.set_cpu_overcommit_milli(v.overcommit.cpu_milli);
  p.set_memory_overcommit_milli(v.overcommit.memory_milli);
  p.set_migratable(v.migratable);
  p.set_migrating(v.migration.has_value());
  if (v.migration) *p.mutable_migration() = ToProto(*v.migration);
  p.set_created_unix_micros(absl::ToUnixMicros(v.created));
  return p;
}

RequestHandler::RequestHandler(ledger::Ledger& ledger, Resources default_compute_unit)
    : ledger_(ledger), default_compute_unit_(default_compute_unit) {}

template <typename T>
absl::StatusOr<T> RequestHandler::Count(Method m, absl::StatusOr<T> result) {
  const int code = static_cast<int>(result.status().code());
  counts_[m][code >= 0 && code < kCodes ? code : static_cast<int>(absl::StatusCode::kUnknown)]
      .fetch_add(1, std::memory_order_relaxed);
  return result;
}

std::vector<RequestHandler::CallCount> RequestHandler::Counts() const {
  std::vector<CallCount> out;
  for (int m = 0; m < kMethods; ++m) {
    for (int c = 0; c < kCodes; ++c) {
      const uint64_t n = counts_[m][c].load(std::memory_order_relaxed);
      if (n > 0) out.push_back({kMethodNames[m], static_cast<absl::StatusCode>(c), n});
    }
  }
  return out;
}

namespace {

absl::StatusOr<ledger::PermitRequest> ResizeFromProto(const api::v1::PermitRequest& r) {
  const std::string call = absl::StrCat("PermitRequest ", Shown(r.vm()), " on ", Shown(r.node()));
  RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
  RETURN_IF_ERROR(Required(r.node(), "node", call));
  RETURN_IF_ERROR(Required(r.vm(), "vm", call));
  ledger::PermitRequest out{.node = r.node(), .vm = r.vm()};
  absl::StatusOr<Resources> cu = core::ComputeUnitFromProto(r.compute_unit());
  if (!cu.ok()) return Annotate(cu.status(), call);
  out.compute_unit = *cu;
  if (!r.has_resources()) return absl::InvalidArgumentError(call + ": resources are missing");
  absl::StatusOr<Resources> resources = core::ResourcesFromProto(r.resources(), "resources");
  if (!resources.ok()) return Annotate(resources.status(), call);
  out.resources = *resources;
  if (r.has_last_permit()) {
    absl::StatusOr<Resources> last = core::ResourcesFromProto(r.last_permit(), "lastPermit");
    if (!last.ok()) return Annotate(last.status(), call);
    out.last_permit = *last;
  }
  return out;
}

api::v1::PermitResponse PermitToProto(const ledger::Permit& p) {
  api::v1::PermitResponse out;
  out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  *out.mutable_permit() = core::ToProto(p.resources);
  if (p.migration) *out.mutable_migration() = ToProto(*p.migration);
  return out;
}

}  // namespace

void RequestHandler::RequestAsync(
    const api::v1::PermitRequest& request,
    std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) {
  absl::StatusOr<ledger::PermitRequest> resize = ResizeFromProto(request);
  if (!resize.ok()) {
    done(Count<api::v1::PermitResponse>(kRequest, resize.status()));
    return;
  }
  ledger_.RequestAsync(*resize, [this, done = std::move(done)](absl::StatusOr<ledger::Permit> p) {
    if (!p.ok()) {
      done(Count<api::v1::PermitResponse>(kRequest, p.status()));
    } else {
      done(Count<api::v1::PermitResponse>(kRequest, PermitToProto(*p)));
    }
  });
}

absl::StatusOr<api::v1::PermitResponse> RequestHandler::Request(
    const api::v1::PermitRequest& request) {
  absl::StatusOr<ledger::PermitRequest> resize = ResizeFromProto(request);
  if (!resize.ok()) return Count<api::v1::PermitResponse>(kRequest, resize.status());
  absl::StatusOr<ledger::Permit> p = ledger_.Request(*resize);
  if (!p.ok()) return Count<api::v1::PermitResponse>(kRequest, p.status());
  return Count<api::v1::PermitResponse>(kRequest, PermitToProto(*p));
}

absl::StatusOr<api::v1::RegisterNodeResponse> RequestHandler::RegisterNode(
    const api::v1::RegisterNodeRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::RegisterNodeResponse> {
    const std::string call = absl::StrCat("RegisterNodeRequest ", Shown(r.node()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.node(), "node", call));
    RETURN_IF_ERROR(CheckName(r.agent_address(), "agent address", call, /*may_be_empty=*/true));
    absl::StatusOr<Resources> total = core::ResourcesFromProto(r.total(), "total");
    if (!total.ok()) return Annotate(total.status(), call);
    ASSIGN_OR_RETURN(ledger::NodeInfo info,
                     ledger_.RegisterNode({.name = r.node(),
                                           .total = *total,
                                           .watermark = r.watermark(),
                                           .agent_address = r.agent_address()}));
    api::v1::RegisterNodeResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    *out.mutable_node() = ToProto(info);
    return out;
  };
  return Count(kRegisterNode, run());
}

absl::StatusOr<api::v1::PlaceVmResponse> RequestHandler::PlaceVm(const api::v1::PlaceVmRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::PlaceVmResponse> {
    const std::string call = absl::StrCat("PlaceVmRequest ", Shown(r.vm()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.vm(), "vm", call));
    RETURN_IF_ERROR(CheckName(r.node(), "node", call, /*may_be_empty=*/true));
    absl::StatusOr<core::Bounds> bounds = core::BoundsFromProto(r.bounds());
    if (!bounds.ok()) return Annotate(bounds.status(), call);
    Resources cu = default_compute_unit_;
    if (r.has_compute_unit()) {
      absl::StatusOr<Resources> c = core::ComputeUnitFromProto(r.compute_unit());
      if (!c.ok()) return Annotate(c.status(), call);
      cu = *c;
    }
    Resources initial = cu * bounds->min_cu;
    if (r.has_initial()) {
      absl::StatusOr<Resources> i = core::ResourcesFromProto(r.initial(), "initial");
      if (!i.ok()) return Annotate(i.status(), call);
      initial = *i;
    }
    const ledger::PlaceVmRequest spec{
        .name = r.vm(),
        .bounds = *bounds,
        .compute_unit = cu,
        .initial = initial,
        .overcommit = {r.cpu_overcommit_milli() == 0 ? 1000 : r.cpu_overcommit_milli(),
                       r.memory_overcommit_milli() == 0 ? 1000 : r.memory_overcommit_milli()},
        .migratable = r.migratable()};
    ASSIGN_OR_RETURN(ledger::Placement p, ledger_.PlaceVm(spec, r.node()));
    api::v1::PlaceVmResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    out.set_node(p.node);
    *out.mutable_permit() = core::ToProto(p.permit);
    return out;
  };
  return Count(kPlaceVm, run());
}

absl::StatusOr<api::v1::ReleaseVmResponse> RequestHandler::ReleaseVm(
    const api::v1::ReleaseVmRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::ReleaseVmResponse> {
    const std::string call = absl::StrCat("ReleaseVmRequest ", Shown(r.vm()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.vm(), "vm", call));
    RETURN_IF_ERROR(ledger_.ReleaseVm(r.vm()));
    api::v1::ReleaseVmResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    return out;
  };
  return Count(kReleaseVm, run());
}

absl::StatusOr<api::v1::MigrationOrdersResponse> RequestHandler::GetMigrationOrders(
    const api::v1::MigrationOrdersRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::MigrationOrdersResponse> {
    const std::string call = absl::StrCat("MigrationOrdersRequest ", Shown(r.node()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.node(), "node", call));
    api::v1::MigrationOrdersResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    if (r.as_target()) {
      // A read: the orders in progress that move a VM to the node (its agent checks an incoming
      // migration against them).
      for (const ledger::VmInfo& v : ledger_.ListVms("")) {
        if (v.migration && v.migration->target_node == r.node()) {
          *out.add_orders() = ToProto(*v.migration);
        }
      }
      return out;
    }
    ASSIGN_OR_RETURN(std::vector<ledger::MigrationOrder> orders, ledger_.MigrationOrders(r.node()));
    for (const ledger::MigrationOrder& o : orders) *out.add_orders() = ToProto(o);
    return out;
  };
  return Count(kGetMigrationOrders, run());
}

absl::StatusOr<api::v1::MigrationResultResponse> RequestHandler::ReportMigration(
    const api::v1::MigrationResult& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::MigrationResultResponse> {
    const std::string call = absl::StrCat("MigrationResult ", r.order_id(), " of ", Shown(r.vm()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.vm(), "vm", call));
    if (!r.succeeded()) LOG(WARNING) << call << " failed: " << r.error();
    RETURN_IF_ERROR(ledger_.EndMigration(r.order_id(), r.vm(), r.succeeded()));
    api::v1::MigrationResultResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    return out;
  };
  return Count(kReportMigration, run());
}

absl::StatusOr<api::v1::ListNodesResponse> RequestHandler::ListNodes(
    const api::v1::ListRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::ListNodesResponse> {
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), "ListNodes"));
    RETURN_IF_ERROR(CheckName(r.node(), "node", "ListNodes", /*may_be_empty=*/true));
    api::v1::ListNodesResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    for (const ledger::NodeInfo& n : ledger_.ListNodes(r.node())) *out.add_nodes() = ToProto(n);
    return out;
  };
  return Count(kListNodes, run());
}

absl::StatusOr<api::v1::ListVmsResponse> RequestHandler::ListVms(const api::v1::ListRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::ListVmsResponse> {
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), "ListVms"));
    RETURN_IF_ERROR(CheckName(r.node(), "node", "ListVms", /*may_be_empty=*/true));
    api::v1::ListVmsResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    for (const ledger::VmInfo& v : ledger_.ListVms(r.node())) *out.add_vms() = ToProto(v);
    return out;
  };
  return Count(kListVms, run());
}

absl::StatusOr<api::v1::StatusResponse> RequestHandler::GetStatus(const api::v1::StatusRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::StatusResponse> {
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), "GetStatus"));
    api::v1::StatusResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    const ledger::RecoveryInfo& info = ledger_.recovery();
    out.set_snapshot_file(info.snapshot_file);
    out.set_records_replayed(info.records_replayed);
    out.set_truncated_file(info.truncated_file);
    out.set_truncated_bytes(info.truncated_bytes);
    out.set_truncation_reason(info.truncation_reason);
    out.set_adopted_permits(ledger_.adopted_permits());
    out.set_clipped_adoptions(ledger_.clipped_adoptions());
    out.set_expired_migrations(ledger_.expired_migrations());
    if (std::optional<ledger::StoreStats> s = ledger_.store_stats()) {
      out.set_records_appended(s->records_appended);
      out.set_fsyncs(s->fsyncs);
      out.set_durable_seq(s->durable_seq);
      if (!s->error.ok()) out.set_store_error(s->error.ToString());
      out.set_low_space(s->low_space);
      out.set_write_errors(s->write_errors);
    }
    return out;
  };
  return Count(kGetStatus, run());
}

absl::StatusOr<api::v1::UpdateNodeResponse> RequestHandler::UpdateNode(
    const api::v1::UpdateNodeRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::UpdateNodeResponse> {
    const std::string call = absl::StrCat("UpdateNodeRequest ", Shown(r.node()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.node(), "node", call));
    std::optional<Resources> total;
    if (r.has_total()) {
      absl::StatusOr<Resources> t = core::ResourcesFromProto(r.total(), "total");
      if (!t.ok()) return Annotate(t.status(), call);
      total = *t;
    }
    std::optional<double> watermark;
    if (r.watermark() != 0) watermark = r.watermark();
    ASSIGN_OR_RETURN(ledger::NodeInfo info, ledger_.UpdateNode(r.node(), total, watermark));
    api::v1::UpdateNodeResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    *out.mutable_node() = ToProto(info);
    return out;
  };
  return Count(kUpdateNode, run());
}

absl::StatusOr<api::v1::CordonNodeResponse> RequestHandler::CordonNode(
    const api::v1::CordonNodeRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::CordonNodeResponse> {
    const std::string call = absl::StrCat("CordonNodeRequest ", Shown(r.node()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.node(), "node", call));
    ASSIGN_OR_RETURN(ledger::NodeInfo info, ledger_.CordonNode(r.node(), r.cordon()));
    api::v1::CordonNodeResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    *out.mutable_node() = ToProto(info);
    return out;
  };
  return Count(kCordonNode, run());
}

absl::StatusOr<api::v1::DrainNodeResponse> RequestHandler::DrainNode(
    const api::v1::DrainNodeRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::DrainNodeResponse> {
    const std::string call = absl::StrCat("DrainNodeRequest ", Shown(r.node()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.node(), "node", call));
    ASSIGN_OR_RETURN(ledger::DrainProgress p, ledger_.DrainNode(r.node()));
    api::v1::DrainNodeResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    *out.mutable_node() = ToProto(p.node);
    for (const ledger::MigrationOrder& o : p.migrating) *out.add_migrating() = ToProto(o);
    for (const std::string& vm : p.waiting) out.add_waiting(vm);
    for (const std::string& vm : p.staying) out.add_staying(vm);
    out.set_done(p.done);
    return out;
  };
  return Count(kDrainNode, run());
}

absl::StatusOr<api::v1::RemoveNodeResponse> RequestHandler::RemoveNode(
    const api::v1::RemoveNodeRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::RemoveNodeResponse> {
    const std::string call = absl::StrCat("RemoveNodeRequest ", Shown(r.node()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.node(), "node", call));
    ASSIGN_OR_RETURN(ledger::RemovedNode removed, ledger_.RemoveNode(r.node(), r.force()));
    api::v1::RemoveNodeResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    for (const ledger::VmInfo& v : removed.dropped_vms) *out.add_dropped_vms() = ToProto(v);
    for (const ledger::MigrationOrder& o : removed.cancelled_migrations) {
      *out.add_cancelled_migrations() = ToProto(o);
    }
    return out;
  };
  return Count(kRemoveNode, run());
}

absl::StatusOr<api::v1::UpdateVmBoundsResponse> RequestHandler::UpdateVmBounds(
    const api::v1::UpdateVmBoundsRequest& r) {
  auto run = [&]() -> absl::StatusOr<api::v1::UpdateVmBoundsResponse> {
    const std::string call = absl::StrCat("UpdateVmBoundsRequest ", Shown(r.vm()));
    RETURN_IF_ERROR(CheckVersion(r.protocol_version(), call));
    RETURN_IF_ERROR(Required(r.vm(), "vm", call));
    RETURN_IF_ERROR(CheckName(r.node(), "node", call, /*may_be_empty=*/true));
    absl::StatusOr<core::Bounds> bounds = core::BoundsFromProto(r.bounds());
    if (!bounds.ok()) return Annotate(bounds.status(), call);
    ASSIGN_OR_RETURN(ledger::VmInfo vm, ledger_.UpdateVmBounds(r.vm(), *bounds, r.node()));
    api::v1::UpdateVmBoundsResponse out;
    out.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    *out.mutable_vm() = ToProto(vm);
    return out;
  };
  return Count(kUpdateVmBounds, run());
}

}  // namespace autoscale::scheduler
