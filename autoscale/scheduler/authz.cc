#include "autoscale/scheduler/authz.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autoscale/base/prometheus.h"
#include "glog/logging.h"

namespace autoscale::scheduler {

namespace {

bool IsAdmin(const Identity& who) { return who.role == Identity::Role::kAdmin; }
bool IsNode(const Identity& who, const std::string& node) {
  return who.role == Identity::Role::kNode && who.name == node;
}

}  // namespace

// Each call: the rate limit, the check, then the inner service.
class Authz::Checked final : public rpc::scheduler::SchedulerService {
 public:
  Checked(Authz& authz, Identity who) : authz_(authz), who_(std::move(who)) {}

  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& r) override {
    if (absl::Status s = CheckRequest(r); !s.ok()) return s;
    return authz_.inner_.Request(r);
  }
  void RequestAsync(const api::v1::PermitRequest& r,
                    std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) override {
    if (absl::Status s = CheckRequest(r); !s.ok()) return done(s);
    authz_.inner_.RequestAsync(r, std::move(done));
  }
  absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
      const api::v1::RegisterNodeRequest& r) override {
    if (absl::Status s = OwnNode("RegisterNode", r.node(), "register node"); !s.ok()) return s;
    if (IsAdmin(who_)) return authz_.inner_.RegisterNode(r);
    api::v1::RegisterNodeRequest bounded = r;
    double watermark = r.watermark();
    if (absl::Status s =
            authz_.NotRaised(who_, "RegisterNode", r.node(),
                             r.has_total() ? bounded.mutable_total() : nullptr, watermark);
        !s.ok()) {
      return s;
    }
    bounded.set_watermark(watermark);
    return authz_.inner_.RegisterNode(bounded);
  }
  absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
      const api::v1::MigrationOrdersRequest& r) override {
    if (absl::Status s = OwnNode("GetMigrationOrders", r.node(), "read the orders of node");
        !s.ok()) {
      return s;
    }
    return authz_.inner_.GetMigrationOrders(r);
  }
  absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
      const api::v1::MigrationResult& r) override {
    if (absl::Status s = authz_.Take(who_, "ReportMigration"); !s.ok()) return s;
    if (!IsAdmin(who_)) {
      const std::string action =
          absl::StrCat("report the result of migration order ", r.order_id(), " of VM ", r.vm());
      if (who_.role != Identity::Role::kNode) return authz_.Deny(who_, "ReportMigration", action);
      absl::StatusOr<ledger::VmInfo> vm = authz_.lookup_(r.vm());
      if (!vm.ok() && vm.status().code() == absl::StatusCode::kUnavailable) return vm.status();
      // Only the order's source ends it: it alone knows whether the VM left.
      if (!vm.ok() || !vm->migration.has_value() || vm->migration->id != r.order_id() ||
          vm->migration->source_node != who_.name) {
        return authz_.Deny(
            who_, "ReportMigration",
            absl::StrCat(action, " (not an order with node ", who_.name, " as its source)"));
      }
    }
    return authz_.inner_.ReportMigration(r);
  }
  absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(const api::v1::PlaceVmRequest& r) override {
    if (absl::Status s = AdminOnly("PlaceVm", absl::StrCat("place VM ", r.vm())); !s.ok()) {
      return s;
    }
    return authz_.inner_.PlaceVm(r);
  }
  absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(
      const api::v1::ReleaseVmRequest& r) override {
    if (absl::Status s = AdminOnly("ReleaseVm", absl::StrCat("release VM ", r.vm())); !s.ok()) {
      return s;
    }
    return authz_.inner_.ReleaseVm(r);
  }
  absl::StatusOr<api::v1::ListNodesResponse> ListNodes(const api::v1::ListRequest& r) override {
    if (absl::Status s = Read("ListNodes", r.node(), "list nodes"); !s.ok()) return s;
    return authz_.inner_.ListNodes(r);
  }
  absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest& r) override {
    if (absl::Status s = Read("ListVms", r.node(), "list the VMs"); !s.ok()) return s;
    return authz_.inner_.ListVms(r);
  }
  absl::StatusOr<api::v1::StatusResponse> GetStatus(const api::v1::StatusRequest& r) override {
    if (absl::Status s = AdminOnly("GetStatus", "read the scheduler's status"); !s.ok()) return s;
    return authz_.inner_.GetStatus(r);
  }
  absl::StatusOr<api::v1::UpdateNodeResponse> UpdateNode(
      const api::v1::UpdateNodeRequest& r) override {
    if (absl::Status s = OwnNode("UpdateNode", r.node(), "update node"); !s.ok()) return s;
    if (!IsAdmin(who_)) {
      double watermark = r.watermark();
      api::v1::Resources total = r.total();
      if (absl::Status s = authz_.NotRaised(who_, "UpdateNode", r.node(),
                                            r.has_total() ? &total : nullptr, watermark);
          !s.ok()) {
        return s;
      }
    }
    return authz_.inner_.UpdateNode(r);
  }
  absl::StatusOr<api::v1::CordonNodeResponse> CordonNode(
      const api::v1::CordonNodeRequest& r) override {
    if (absl::Status s = AdminOnly("CordonNode", absl::StrCat("cordon node ", r.node())); !s.ok()) {
      return s;
    }
    return authz_.inner_.CordonNode(r);
  }
  absl::StatusOr<api::v1::DrainNodeResponse> DrainNode(
      const api::v1::DrainNodeRequest& r) override {
    if (absl::Status s = AdminOnly("DrainNode", absl::StrCat("drain node ", r.node())); !s.ok()) {
      return s;
    }
    return authz_.inner_.DrainNode(r);
  }
  absl::StatusOr<api::v1::RemoveNodeResponse> RemoveNode(
      const api::v1::RemoveNodeRequest& r) override {
    if (absl::Status s = AdminOnly("RemoveNode", absl::StrCat("remove node ", r.node())); !s.ok()) {
      return s;
    }
    return authz_.inner_.RemoveNode(r);
  }
  absl::StatusOr<api::v1::UpdateVmBoundsResponse> UpdateVmBounds(
      const api::v1::UpdateVmBoundsRequest& r) override {
    if (absl::Status s = OwnNode("UpdateVmBounds", r.node(),
                                 absl::StrCat("update the bounds of VM ", r.vm(), " on node"));
        !s.ok()) {
      return s;
    }
    if (!IsAdmin(who_)) {
      // The node named must be the VM's: the agent's word is not enough.
      absl::StatusOr<ledger::VmInfo> vm = authz_.lookup_(r.vm());
      if (!vm.ok() && vm.status().code() == absl::StatusCode::kUnavailable) return vm.status();
      if (vm.ok() && vm->node != who_.name) {
        return authz_.Deny(who_, "UpdateVmBounds",
                           absl::StrCat("update the bounds of VM ", r.vm(), " on node ", vm->node));
      }
    }
    return authz_.inner_.UpdateVmBounds(r);
  }

 private:
  absl::Status CheckRequest(const api::v1::PermitRequest& r) {
    return OwnNode("Request", r.node(),
                   absl::StrCat("request resources for VM ", r.vm(), " on node"));
  }
  absl::Status AdminOnly(const char* method, const std::string& action) {
    if (absl::Status s = authz_.Take(who_, method); !s.ok()) return s;
    if (IsAdmin(who_)) return absl::OkStatus();
    return authz_.Deny(who_, method, action);
  }
  // Admin, or the agent of `node`.
  absl::Status OwnNode(const char* method, const std::string& node, const std::string& action) {
    if (absl::Status s = authz_.Take(who_, method); !s.ok()) return s;
    if (IsAdmin(who_) || IsNode(who_, node)) return absl::OkStatus();
    return authz_.Deny(who_, method, absl::StrCat(action, " ", node));
  }
  // Admin, or an agent reading its own node (the list's node filter).
  absl::Status Read(const char* method, const std::string& node, const std::string& action) {
    if (absl::Status s = authz_.Take(who_, method); !s.ok()) return s;
    if (IsAdmin(who_) || (!node.empty() && IsNode(who_, node))) return absl::OkStatus();
    return authz_.Deny(who_, method,
                       node.empty() ? absl::StrCat(action, " of every node")
                                    : absl::StrCat(action, " of node ", node));
  }

  Authz& authz_;
  const Identity who_;
};

Authz::Authz(rpc::scheduler::SchedulerService& inner, VmLookup lookup, Options options)
    : inner_(inner),
      lookup_(std::move(lookup)),
      options_(options),
      clock_(options.clock != nullptr ? *options.clock : Clock::Real()) {}

std::shared_ptr<rpc::scheduler::SchedulerService> Authz::For(const std::string& identity) {
  return std::make_shared<Checked>(*this, ParseIdentity(identity));
}

absl::Status Authz::Deny(const Identity& who, const char* method, const std::string& action) {
  {
    absl::MutexLock l(&mu_);
    ++denials_[method];
  }
  const std::string message = absl::StrCat(rpc::Describe(who), " may not ", action);
  LOG(WARNING) << "denied: " << message;
  return absl::PermissionDeniedError(message);
}

absl::Status Authz::NotRaised(const Identity& who, const char* method, const std::string& node,
                              api::v1::Resources* total, double& watermark) {
  api::v1::ListRequest list;
  list.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  list.set_node(node);
  absl::StatusOr<api::v1::ListNodesResponse> known = inner_.ListNodes(list);
  if (!known.ok()) return known.status();  // a standby's UNAVAILABLE naming the leader, say
  if (known->nodes().empty()) {
    const core::Resources& cap = options_.max_node_total;
    if (total == nullptr || cap.IsZero()) return absl::OkStatus();
    if ((cap.milli_cpu > 0 && total->milli_cpu() > cap.milli_cpu) ||
        (cap.memory_bytes > 0 && total->memory_bytes() > cap.memory_bytes)) {
      return Deny(
          who, method,
          absl::StrCat("register node ", node, " with a total of ",
                       core::Resources{total->milli_cpu(), total->memory_bytes()}.ToString(),
                       " (the operator's cap for a new node is ", cap.ToString(), ")"));
    }
    return absl::OkStatus();
  }
  const api::v1::NodeState& now = known->nodes(0);
  if (std::string_view(method) == "RegisterNode") {
    // An agent (re)starting says what its config says; what the operator lowered since stays
    // lowered, and the rest of the registration (its address) is taken. Refusing it would leave
    // the node's migrations going to an address the agent no longer serves.
    const bool capped = total != nullptr && (total->milli_cpu() > now.total().milli_cpu() ||
                                             total->memory_bytes() > now.total().memory_bytes());
    if (capped) {
      LOG(WARNING)
          << rpc::Describe(who) << " registers node " << node << " with a total of "
          << core::Resources{total->milli_cpu(), total->memory_bytes()}.ToString()
          << "; it keeps no more than its current "
          << core::Resources{now.total().milli_cpu(), now.total().memory_bytes()}.ToString()
          << " (only the admin may raise it)";
      total->set_milli_cpu(std::min(total->milli_cpu(), now.total().milli_cpu()));
      total->set_memory_bytes(std::min(total->memory_bytes(), now.total().memory_bytes()));
    }
    if (watermark == 0 || watermark > now.watermark_fraction()) {
      watermark = now.watermark_fraction();
    }
    return absl::OkStatus();
  }
  if (total != nullptr && (total->milli_cpu() > now.total().milli_cpu() ||
                           total->memory_bytes() > now.total().memory_bytes())) {
    return Deny(who, method,
                absl::StrCat(
                    "raise the total of node ", node, " from ",
                    core::Resources{now.total().milli_cpu(), now.total().memory_bytes()}.ToString(),
                    " to ", core::Resources{total->milli_cpu(), total->memory_bytes()}.ToString(),
                    " (only the admin may)"));
  }
  if (watermark > now.watermark_fraction()) {
    return Deny(who, method,
                absl::StrCat("raise the watermark of node ", node, " from ",
                             now.watermark_fraction(), " to ", watermark, " (only the admin may)"));
  }
  return absl::OkStatus();
}

absl::Status Authz::Take(const Identity& who, const char* method) {
  if (!options_.trust_domain.empty() && who.trust_domain != options_.trust_domain) {
    return Deny(who, method,
                absl::StrCat("call ", method, ": only identities of trust domain ",
                             options_.trust_domain, " may"));
  }
  const absl::Time now = clock_.Now();
  absl::MutexLock l(&mu_);
  auto [it, added] = buckets_.try_emplace(who.uri, Bucket{options_.burst, now});
  Bucket& b = it->second;
  b.tokens =
      std::min(options_.burst,
               b.tokens + absl::ToDoubleSeconds(std::max(now - b.last, absl::ZeroDuration())) *
                              options_.rate);
  b.last = now;
  if (b.tokens < 1) {
    ++rate_limited_;
    return absl::ResourceExhaustedError(absl::StrCat(rpc::Describe(who), " ", method,
                                                     ": over its rate limit of ", options_.rate,
                                                     " calls per second"));
  }
  b.tokens -= 1;
  return absl::OkStatus();
}

std::map<std::string, uint64_t> Authz::Denials() const {
  absl::MutexLock l(&mu_);
  return denials_;
}

uint64_t Authz::RateLimited() const {
  absl::MutexLock l(&mu_);
  return rate_limited_;
}

std::string Authz::MetricsText() const {
  Metrics m;
  constexpr char kDenied[] = "autoscaling_scheduler_authz_denials_total";
  constexpr char kLimited[] = "autoscaling_scheduler_rate_limited_total";
  m.Describe(kDenied, Metrics::kCounter, "Calls refused PERMISSION_DENIED, by method.");
  m.Describe(kLimited, Metrics::kCounter, "Calls refused by the per-identity rate limit.");
  absl::MutexLock l(&mu_);
  for (const auto& [method, count] : denials_) {
    m.Set(kDenied, {{"method", method}}, static_cast<double>(count));
  }
  m.Set(kLimited, {}, static_cast<double>(rate_limited_));
  return m.Render();
}

}  // namespace autoscale::scheduler
