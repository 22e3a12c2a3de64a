#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/internal/records.h"
#include "autoscale/ledger/ledger.h"
#include "glog/logging.h"

// Recovery: the ledger rebuilt from its store (a snapshot, then the log's records), and
// snapshots written.

namespace autoscale::ledger {

using internal::Corrupt;
using internal::FromRecord;
using internal::TwoLocks;
namespace change = internal::change;

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(LedgerOptions options,
                                                     std::unique_ptr<LedgerStore> store) {
  if (store == nullptr) return absl::InvalidArgumentError("Ledger::Open: no store");
  ASSIGN_OR_RETURN(StoredState state, store->Recover());
  std::unique_ptr<Ledger> ledger(new Ledger(std::move(options), std::move(store)));
  RETURN_IF_ERROR(ledger->Restore(state));
  return ledger;
}

// --- snapshots and recovery ---

// Every node is locked (LockAll), which the analysis cannot follow.
absl::Status Ledger::Snapshot() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (store_ == nullptr) return absl::OkStatus();
  // A store that cannot write its log would not write a snapshot either (nor move past a cut).
  RETURN_IF_ERROR(Writable(/*growth=*/false, "snapshot"));
  absl::MutexLock sl(&snapshot_mu_);
  LedgerSnapshot snap;
  {
    absl::MutexLock rl(&registry_mu_);
    LockAll();
    absl::Cleanup unlock = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { UnlockAll(); };
    for (Node* n : registry_->sorted) *snap.add_nodes() = internal::NodeRecordOf(*n);
    for (Node* n : registry_->sorted) {
      std::vector<const std::pair<const std::string, Vm>*> vms;
      for (const auto& entry : n->vms) vms.push_back(&entry);
      std::sort(vms.begin(), vms.end(), [](auto* a, auto* b) { return a->first < b->first; });
      for (const auto* entry : vms) {
        *snap.add_vms() = internal::VmRecordOf(entry->first, n->name, entry->second);
      }
    }
    snap.set_next_migration_id(next_migration_id_);
    // Every node is locked, so nothing is appended between the cut and the copy above.
    snap.set_seq(store_->Cut());
  }
  return store_->WriteSnapshot(snap);
}

// Reads the change back, checks what it says against the state (what the live operation checked
// before it made the change) and applies it as the operation did.
absl::Status Ledger::Replay(const LedgerRecord& record) {
  switch (record.change_case()) {
    case LedgerRecord::kNodeRegistered: {
      ASSIGN_OR_RETURN(const change::NodeRegistered c, FromRecord(record.node_registered()));
      auto found = registry_->by_name.find(c.name);
      if (found == registry_->by_name.end()) {
        Apply(c, nullptr);
      } else {
        absl::MutexLock l(&found->second->mu);
        Apply(c, found->second);
      }
      return absl::OkStatus();
    }
    case LedgerRecord::kVmPlaced: {
      ASSIGN_OR_RETURN(const change::VmPlaced c, FromRecord(record.vm_placed()));
      auto found = registry_->by_name.find(c.node);
      if (found == registry_->by_name.end() || vm_index_.contains(c.name)) {
        return Corrupt(absl::StrCat("VM ", c.name, " placed twice or on unknown node ", c.node));
      }
      absl::MutexLock l(&found->second->mu);
      Apply(c, *found->second);
      return absl::OkStatus();
    }
    case LedgerRecord::kVmResized: {
      ASSIGN_OR_RETURN(const change::VmResized c, FromRecord(record.vm_resized()));
      auto found = vm_index_.find(c.vm);
      if (found == vm_index_.end() || found->second->name != c.node) {
        return Corrupt(absl::StrCat("resize of VM ", c.vm, " not on node ", c.node));
      }
      Node* n = found->second;
      absl::MutexLock l(&n->mu);
      Vm& vm = n->vms.at(c.vm);
      // Whole CUs; within the bounds only if the agent asked since they last changed.
      if (absl::Status s = internal::CheckWholeUnits(c.permit, vm.cu, "permit"); !s.ok()) {
        return Corrupt(absl::StrCat("VM ", c.vm, ": ", s.message()));
      }
      if (vm.migration) return Corrupt(absl::StrCat("resize of migrating VM ", c.vm));
      Apply(c, *n, vm);
      return absl::OkStatus();
    }
    case LedgerRecord::kVmReleased: {
      const change::VmReleased c{.vm = record.vm_released()};
      auto found = vm_index_.find(c.vm);
      if (found == vm_index_.end()) return Corrupt(absl::StrCat("release of unknown VM ", c.vm));
      Node* src = found->second;
      Node* dst = nullptr;
      {
        absl::MutexLock l(&src->mu);
        const Vm& vm = src->vms.at(c.vm);
        if (vm.migration) dst = registry_->by_name.at(vm.migration->target_node);
      }
      TwoLocks locks(src, dst);
      Apply(c, *src, dst);
      return absl::OkStatus();
    }
    case LedgerRecord::kMigrationStarted: {
      ASSIGN_OR_RETURN(const change::MigrationStarted c, FromRecord(record.migration_started()));
      const MigrationOrder& o = c.order;
      auto found = vm_index_.find(o.vm);
      auto t = registry_->by_name.find(o.target_node);
      if (found == vm_index_.end() || found->second->name != o.source_node ||
          t == registry_->by_name.end() || t->second == found->second) {
        return Corrupt(absl::StrCat("migration ", o.id, " of VM ", o.vm, " from ", o.source_node,
                                    " to ", o.target_node));
      }
      Node* src = found->second;
      Node* dst = t->second;
      TwoLocks locks(src, dst);
      if (src->vms.at(o.vm).migration) return Corrupt(absl::StrCat("VM ", o.vm, " migrates twice"));
      Apply(c, *src, *dst);
      return absl::OkStatus();
    }
    case LedgerRecord::kMigrationEnded: {
      ASSIGN_OR_RETURN(const change::MigrationEnded c, FromRecord(record.migration_ended()));
      auto found = vm_index_.find(c.vm);
      if (found == vm_index_.end()) return Corrupt(absl::StrCat("end of unknown VM ", c.vm));
      Node* src = found->second;
      Node* dst;
      {
        absl::MutexLock l(&src->mu);
        const Vm& vm = src->vms.at(c.vm);
        if (!vm.migration || vm.migration->id != c.id) {
          return Corrupt(absl::StrCat("end of unknown migration ", c.id, " of VM ", c.vm));
        }
        dst = registry_->by_name.at(vm.migration->target_node);
      }
      TwoLocks locks(src, dst);
      Apply(c, *src, *dst);
      return absl::OkStatus();
    }
    case LedgerRecord::kNodeRemoved: {
      ASSIGN_OR_RETURN(const change::NodeRemoved c, FromRecord(record.node_removed()));
      auto found = registry_->by_name.find(c.node);
      if (found == registry_->by_name.end()) {
        return Corrupt(absl::StrCat("removal of unknown node ", c.node));
      }
      Node* node = found->second;
      std::vector<Node*> linked = {node};
      {
        absl::MutexLock l(&node->mu);
        if (!c.forced && (!node->vms.empty() || !node->incoming.empty())) {
          return Corrupt(absl::StrCat("node ", c.node, " removed without force while it held VMs"));
        }
        for (const auto& [vm_name, vm] : node->vms) {
          if (vm.migration) linked.push_back(registry_->by_name.at(vm.migration->target_node));
        }
        for (const auto& [vm_name, in] : node->incoming) linked.push_back(vm_index_.at(vm_name));
      }
      internal::LockSet locks(linked);
      Apply(c, *node);
      return absl::OkStatus();
    }
    case LedgerRecord::kVmBoundsChanged: {
      ASSIGN_OR_RETURN(const change::VmBoundsChanged c, FromRecord(record.vm_bounds_changed()));
      auto found = vm_index_.find(c.vm);
      if (found == vm_index_.end()) return Corrupt(absl::StrCat("bounds of unknown VM ", c.vm));
      Node* n = found->second;
      absl::MutexLock l(&n->mu);
      Vm& vm = n->vms.at(c.vm);
      if (absl::Status s = internal::CheckBounds(c.bounds, vm.cu); !s.ok()) {
        return Corrupt(absl::StrCat("VM ", c.vm, ": ", s.message()));
      }
      Apply(c, *n, vm);
      return absl::OkStatus();
    }
    case LedgerRecord::CHANGE_NOT_SET:
      break;
  }
  return Corrupt("record without a change (written by a newer version?)");
}

absl::Status Ledger::Restore(const StoredState& state) {
  absl::MutexLock rl(&registry_mu_);
  recovery_ = state.info;
  if (state.snapshot) {
    // A snapshot is read as the changes that build it: its nodes registered, its VMs placed
    // (without their migrations first, so that every target exists when those start), its
    // migrations started.
    for (const NodeRecord& n : state.snapshot->nodes()) {
      LedgerRecord r;
      *r.mutable_node_registered() = n;
      RETURN_IF_ERROR(Annotate(Replay(r), recovery_.snapshot_file));
    }
    for (const VmRecord& v : state.snapshot->vms()) {
      LedgerRecord r;
      *r.mutable_vm_placed() = v;
      r.mutable_vm_placed()->clear_migration();
      RETURN_IF_ERROR(Annotate(Replay(r), recovery_.snapshot_file));
    }
    for (const VmRecord& v : state.snapshot->vms()) {
      if (!v.has_migration()) continue;
      LedgerRecord r;
      *r.mutable_migration_started() = v.migration();
      RETURN_IF_ERROR(Annotate(Replay(r), recovery_.snapshot_file));
    }
    // What a snapshot holds that its changes do not rebuild: ids of migrations that started and
    // ended before it are not reused; and a node above its total got there by an operator's
    // lower total (the live ledger checked that, CheckInvariants), which the snapshot's order
    // of changes (the node first, then its VMs) does not show.
    next_migration_id_ = std::max(next_migration_id_, state.snapshot->next_migration_id());
    for (Node* n : registry_->sorted) {
      absl::MutexLock l(&n->mu);
      n->over_capacity = n->reserved.AnyGreaterThan(n->total);
    }
  }
  const uint64_t first_seq = state.last_seq - state.records.size() + 1;
  for (size_t i = 0; i < state.records.size(); ++i) {
    RETURN_IF_ERROR(Annotate(Replay(state.records[i]), absl::StrCat("record ", first_seq + i)));
  }
  // What agents did while the scheduler was down is unknown until they speak (volatile, see
  // Vm::heard: replay left every VM heard).
  const absl::Time until = clock_.Now() + options_.recovery_grace;
  for (Node* n : registry_->sorted) {
    absl::MutexLock l(&n->mu);
    for (auto& [name, vm] : n->vms) vm.heard = false;
    n->unheard = n->vms.size();
    n->awaiting_until = until;
  }
  LOG(INFO) << "ledger recovered: " << registry_->sorted.size() << " nodes, " << vm_index_.size()
            << " VMs"
            << (state.info.snapshot_file.empty() ? ""
                                                 : " from snapshot " + state.info.snapshot_file)
            << " and " << state.records.size() << " log records";
  return absl::OkStatus();
}

}  // namespace autoscale::ledger
