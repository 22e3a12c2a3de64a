#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/internal/records.h"
#include "autoscale/ledger/ledger.h"
#include "glog/logging.h"

// Nodes: registration and the lifecycle of a cluster's nodes (update, cordon, drain, remove),
// and a VM's bounds. Every change is a record applied through the one mutation path (apply.cc).

namespace autoscale::ledger {

using internal::CheckAmount;
using internal::CheckName;
using internal::InfoOf;
using internal::LockSet;
namespace change = internal::change;

namespace {

absl::Status CheckTotal(const Resources& total, const std::string& ctx) {
  RETURN_IF_ERROR(Annotate(CheckAmount(total, "total"), ctx));
  if (total.milli_cpu == 0 || total.memory_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": total ", total.ToString(), " must be > 0 in both resources"));
  }
  return absl::OkStatus();
}

// The node's settings as a change, to modify and apply.
change::NodeRegistered SettingsOf(const internal::Node& n) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  return {.name = n.name,
          .total = n.total,
          .watermark = n.watermark_fraction,
          .agent_address = n.agent_address,
          .cordoned = n.cordoned,
          .draining = n.draining};
}

bool SameSettings(const change::NodeRegistered& c,
                  const internal::Node& n) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  return n.total == c.total && n.watermark_fraction == c.watermark &&
         n.agent_address == c.agent_address && n.cordoned == c.cordoned && n.draining == c.draining;
}

// "a, b, c" with at most `most` names.
std::string Some(const std::vector<std::string>& names, size_t most = 5) {
  std::vector<std::string> head(names.begin(), names.begin() + std::min(most, names.size()));
  std::string out = absl::StrJoin(head, ", ");
  if (names.size() > most) absl::StrAppend(&out, " and ", names.size() - most, " more");
  return out;
}

}  // namespace

Ledger::Node* Ledger::LiveNode(const std::string& name) const {
  auto found = registry_->by_name.find(name);
  return found == registry_->by_name.end() ? nullptr : found->second;
}

// `node` is locked by the caller when given, which the analysis cannot follow.
absl::StatusOr<uint64_t> Ledger::SetNode(const change::NodeRegistered& change, Node* node,
                                         std::string_view what) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  RETURN_IF_ERROR(Writable(/*growth=*/false, what));
  LedgerRecord record;
  if (store_ != nullptr) {
    record = internal::ToRecord(change);
    RETURN_IF_ERROR(CheckRecord(record, what));
  }
  if (node == nullptr) {
    node = Apply(change, nullptr);
    absl::MutexLock nl(&node->mu);
    if (store_ != nullptr) node->last_seq = Log(record);
    return node->last_seq;
  }
  node->mu.AssertHeld();
  Apply(change, node);
  if (store_ != nullptr) node->last_seq = Log(record);
  if (node->over_capacity) {
    LOG(WARNING) << "node " << node->name << ": total " << node->total.ToString()
                 << " is below the " << node->reserved.ToString()
                 << " it has reserved: over capacity, it grants nothing until VMs leave it";
  }
  return node->last_seq;
}

absl::StatusOr<NodeInfo> Ledger::RegisterNode(const NodeSpec& spec) {
  const std::string ctx = absl::StrCat("register node ", spec.name);
  RETURN_IF_ERROR(Annotate(CheckName(spec.name, "node name"), "register node"));
  RETURN_IF_ERROR(Annotate(CheckName(spec.agent_address, "agent address", true), ctx));
  RETURN_IF_ERROR(CheckTotal(spec.total, ctx));
  if (!(spec.watermark >= 0 && spec.watermark <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": watermark ", spec.watermark, " is outside (0, 1]"));
  }
  change::NodeRegistered change{
      .name = spec.name,
      .total = spec.total,
      .watermark = spec.watermark == 0 ? options_.default_watermark : spec.watermark,
      .agent_address = spec.agent_address};
  uint64_t wait = 0;
  NodeInfo info;
  {
    absl::MutexLock rl(&registry_mu_);
    Node* node = LiveNode(spec.name);
    if (node == nullptr) {
      ASSIGN_OR_RETURN(wait, SetNode(change, nullptr, ctx));
      node = LiveNode(spec.name);
      absl::MutexLock nl(&node->mu);
      info = node->Info(clock_.Now());
    } else {
      absl::MutexLock nl(&node->mu);
      change.cordoned = node->cordoned;
      change.draining = node->draining;
      if (SameSettings(change, *node)) {
        wait = node->last_seq;
      } else {
        ASSIGN_OR_RETURN(wait, SetNode(change, node, ctx));
      }
      info = node->Info(clock_.Now());
    }
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return info;
}

absl::StatusOr<NodeInfo> Ledger::UpdateNode(const std::string& name, std::optional<Resources> total,
                                            std::optional<double> watermark) {
  const std::string ctx = absl::StrCat("update node ", name);
  if (total) RETURN_IF_ERROR(CheckTotal(*total, ctx));
  if (watermark && !(*watermark > 0 && *watermark <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": watermark ", *watermark, " is outside (0, 1]"));
  }
  uint64_t wait = 0;
  NodeInfo info;
  {
    absl::MutexLock rl(&registry_mu_);
    Node* node = LiveNode(name);
    if (node == nullptr) return absl::NotFoundError(absl::StrCat(ctx, ": no such node"));
    absl::MutexLock nl(&node->mu);
    change::NodeRegistered change = SettingsOf(*node);
    if (total) change.total = *total;
    if (watermark) change.watermark = *watermark;
    if (SameSettings(change, *node)) {
      wait = node->last_seq;
    } else {
      ASSIGN_OR_RETURN(wait, SetNode(change, node, ctx));
    }
    info = node->Info(clock_.Now());
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return info;
}

absl::StatusOr<NodeInfo> Ledger::CordonNode(const std::string& name, bool cordon) {
  const std::string ctx = absl::StrCat(cordon ? "cordon" : "uncordon", " node ", name);
  uint64_t wait = 0;
  NodeInfo info;
  {
    absl::MutexLock rl(&registry_mu_);
    Node* node = LiveNode(name);
    if (node == nullptr) return absl::NotFoundError(absl::StrCat(ctx, ": no such node"));
    absl::MutexLock nl(&node->mu);
    change::NodeRegistered change = SettingsOf(*node);
    change.cordoned = cordon;
    // Lifting the cordon ends a drain; a cordon keeps one going.
    change.draining = cordon && node->draining;
    if (SameSettings(change, *node)) {
      wait = node->last_seq;
    } else {
      ASSIGN_OR_RETURN(wait, SetNode(change, node, ctx));
      LOG(INFO) << "node " << name << (cordon ? " cordoned" : " uncordoned");
    }
    info = node->Info(clock_.Now());
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return info;
}

absl::StatusOr<DrainProgress> Ledger::DrainNode(const std::string& name) {
  const std::string ctx = absl::StrCat("drain node ", name);
  uint64_t wait = 0;
  DrainProgress progress;
  {
    absl::MutexLock rl(&registry_mu_);
    Node* node = LiveNode(name);
    if (node == nullptr) return absl::NotFoundError(absl::StrCat(ctx, ": no such node"));
    {
      absl::MutexLock nl(&node->mu);
      if (!node->draining) {
        change::NodeRegistered change = SettingsOf(*node);
        change.cordoned = change.draining = true;
        ASSIGN_OR_RETURN(wait, SetNode(change, node, ctx));
        LOG(INFO) << "node " << name
                  << " cordoned and draining: its migratable VMs are ordered away";
      }
    }
    ASSIGN_OR_RETURN(progress, DrainStep(node, &wait));
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return progress;
}

absl::StatusOr<DrainProgress> Ledger::DrainStep(Node* node, uint64_t* wait_seq) {
  std::vector<std::string> to_move;
  {
    absl::MutexLock l(&node->mu);
    for (const auto& [vm_name, vm] : node->vms) {
      if (vm.migratable && !vm.migration) to_move.push_back(vm_name);
    }
  }
  if (!to_move.empty()) {
    RETURN_IF_ERROR(Writable(/*growth=*/true, absl::StrCat("drain node ", node->name)));
    std::sort(to_move.begin(), to_move.end());
    for (const std::string& vm : to_move) {
      StartMigration(node, vm, /*any_room=*/true, "is draining", wait_seq);
    }
  }
  DrainProgress progress;
  absl::MutexLock l(&node->mu);
  for (const auto& [vm_name, vm] : node->vms) {
    if (vm.migration) {
      progress.migrating.push_back(*vm.migration);
    } else if (vm.migratable) {
      progress.waiting.push_back(vm_name);
    } else {
      progress.staying.push_back(vm_name);
    }
  }
  std::sort(progress.migrating.begin(), progress.migrating.end(),
            [](const MigrationOrder& a, const MigrationOrder& b) { return a.vm < b.vm; });
  std::sort(progress.waiting.begin(), progress.waiting.end());
  std::sort(progress.staying.begin(), progress.staying.end());
  progress.done = node->vms.empty();
  progress.node = node->Info(clock_.Now());
  return progress;
}

// Several nodes are locked (LockSet), which the analysis cannot follow.
absl::StatusOr<RemovedNode> Ledger::RemoveNode(const std::string& name,
                                               bool force) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  const std::string ctx = absl::StrCat("remove node ", name);
  uint64_t seq = 0;
  RemovedNode removed;
  {
    absl::MutexLock rl(&registry_mu_);
    Node* node = LiveNode(name);
    if (node == nullptr) return absl::NotFoundError(absl::StrCat(ctx, ": no such node"));
    RETURN_IF_ERROR(Writable(/*growth=*/false, ctx));
    // The nodes its migrations link it to: the targets of its VMs', the sources of incoming ones.
    std::vector<Node*> linked = {node};
    {
      absl::MutexLock l(&node->mu);
      std::vector<std::string> vms, incoming;
      for (const auto& [vm_name, vm] : node->vms) {
        vms.push_back(vm_name);
        if (vm.migration) linked.push_back(registry_->by_name.at(vm.migration->target_node));
      }
      for (const auto& [vm_name, in] : node->incoming) {
        incoming.push_back(vm_name);
        linked.push_back(vm_index_.at(vm_name));
      }
      if (!force && (!vms.empty() || !incoming.empty())) {
        std::sort(vms.begin(), vms.end());
        std::sort(incoming.begin(), incoming.end());
        std::string left;
        if (!vms.empty()) absl::StrAppend(&left, vms.size(), " VMs (", Some(vms), ")");
        if (!incoming.empty()) {
          absl::StrAppend(&left, left.empty() ? "" : " and ", incoming.size(),
                          " incoming migrations (", Some(incoming), ")");
        }
        return absl::FailedPreconditionError(absl::StrCat(
            ctx, ": it still holds ", left,
            "; drain it and release what stays, or remove it by force (which drops them)"));
      }
    }
    LockSet locks(linked);
    for (const auto& [vm_name, vm] : node->vms) {
      removed.dropped_vms.push_back(InfoOf(vm_name, node->name, vm));
      if (vm.migration) removed.cancelled_migrations.push_back(*vm.migration);
    }
    std::vector<Vm*> sources;
    for (const auto& [vm_name, in] : node->incoming) {
      Vm& vm = vm_index_.at(vm_name)->vms.at(vm_name);
      removed.cancelled_migrations.push_back(*vm.migration);
      sources.push_back(&vm);
    }
    std::sort(removed.dropped_vms.begin(), removed.dropped_vms.end(),
              [](const VmInfo& a, const VmInfo& b) { return a.name < b.name; });
    std::sort(removed.cancelled_migrations.begin(), removed.cancelled_migrations.end(),
              [](const MigrationOrder& a, const MigrationOrder& b) { return a.id < b.id; });
    const change::NodeRemoved change{.node = name, .forced = force};
    LedgerRecord record;
    if (store_ != nullptr) {
      record = internal::ToRecord(change);
      RETURN_IF_ERROR(CheckRecord(record, ctx));
    }
    Apply(change, *node);
    if (store_ != nullptr) {
      seq = Log(record);
      // Answers about the VMs whose migration it ended depend on this record.
      for (Vm* vm : sources) vm->last_seq = seq;
    }
    std::vector<std::string> dropped;
    for (const VmInfo& v : removed.dropped_vms) dropped.push_back(v.name);
    LOG(WARNING) << "node " << name << " removed"
                 << (dropped.empty() ? std::string()
                                     : absl::StrCat(" by force, dropping ", dropped.size(),
                                                    " VMs (", Some(dropped, 20), ")"))
                 << (removed.cancelled_migrations.empty()
                         ? std::string()
                         : absl::StrCat(", ending ", removed.cancelled_migrations.size(),
                                        " migrations as failed"));
  }
  RETURN_IF_ERROR(WaitDurable(seq));
  return removed;
}

absl::StatusOr<VmInfo> Ledger::UpdateVmBounds(const std::string& vm_name, const Bounds& bounds,
                                              const std::string& node_name) {
  const std::string ctx = absl::StrCat("update bounds of VM ", vm_name);
  uint64_t wait = 0;
  VmInfo info;
  {
    absl::MutexLock rl(&registry_mu_);
    auto it = vm_index_.find(vm_name);
    if (it == vm_index_.end()) return absl::NotFoundError(absl::StrCat(ctx, ": no such VM"));
    Node* node = it->second;
    if (!node_name.empty() && node_name != node->name) {
      return absl::NotFoundError(absl::StrCat(ctx, ": it is not on node ", node_name));
    }
    absl::MutexLock nl(&node->mu);
    Vm& vm = node->vms.at(vm_name);
    RETURN_IF_ERROR(Annotate(internal::CheckBounds(bounds, vm.cu), ctx));
    if (vm.bounds == bounds) {
      wait = vm.last_seq;
    } else {
      RETURN_IF_ERROR(Writable(/*growth=*/false, ctx));
      const change::VmBoundsChanged change{.vm = vm_name, .bounds = bounds};
      LedgerRecord record;
      if (store_ != nullptr) {
        record = internal::ToRecord(change);
        RETURN_IF_ERROR(CheckRecord(record, ctx));
      }
      Apply(change, *node, vm);
      if (store_ != nullptr) vm.last_seq = Log(record);
      wait = vm.last_seq;
    }
    info = InfoOf(vm_name, node->name, vm);
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return info;
}

}  // namespace autoscale::ledger
