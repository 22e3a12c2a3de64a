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

using internal::AmountFromProto;
using internal::CheckBounds;
using internal::CheckComputeUnit;
using internal::CheckOvercommit;
using internal::CheckSize;
using internal::Corrupt;
using internal::Incoming;
using internal::Node;
using internal::TwoLocks;
using internal::Vm;

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

absl::Status Ledger::ApplyRecord(const LedgerRecord& record) {
  switch (record.change_case()) {
    case LedgerRecord::kNodeRegistered: {
      const NodeRecord& r = record.node_registered();
      if (r.name().empty()) return Corrupt("node record without a name");
      ASSIGN_OR_RETURN(Resources total, AmountFromProto(r.total(), "node total"));
      if (!(r.watermark() > 0 && r.watermark() <= 1)) {
        return Corrupt(absl::StrCat("node ", r.name(), ": watermark ", r.watermark()));
      }
      auto found = registry_->by_name.find(r.name());
      Node* n = found == registry_->by_name.end() ? AddNode(r.name()) : found->second;
      absl::MutexLock l(&n->mu);
      n->total = total;
      n->watermark_fraction = r.watermark();
      n->agent_address = r.agent_address();
      return absl::OkStatus();
    }
    case LedgerRecord::kVmPlaced: {
      const VmRecord& r = record.vm_placed();
      const std::string ctx = absl::StrCat("VM ", r.name());
      auto found = registry_->by_name.find(r.node());
      if (found == registry_->by_name.end() || vm_index_.contains(r.name()) || r.name().empty()) {
        return Corrupt(absl::StrCat(ctx, " placed twice or on unknown node ", r.node()));
      }
      Vm vm;
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
      if (valid.ok()) valid = CheckSize(vm.permit, vm.cu, vm.bounds, "permit");
      if (!valid.ok()) return Corrupt(absl::StrCat(ctx, ": ", valid.message()));
      // A VM is placed before it migrates (a snapshot's migrations are replayed after).
      if (r.has_migration()) return Corrupt(absl::StrCat(ctx, ": placed while migrating"));
      Node* n = found->second;
      absl::MutexLock l(&n->mu);
      n->Add(r.name(), std::move(vm));
      vm_index_[r.name()] = n;
      return absl::OkStatus();
    }
    case LedgerRecord::kVmResized: {
      const VmResized& r = record.vm_resized();
      auto found = vm_index_.find(r.vm());
      if (found == vm_index_.end() || found->second->name != r.node()) {
        return Corrupt(absl::StrCat("resize of VM ", r.vm(), " not on node ", r.node()));
      }
      Node* n = found->second;
      absl::MutexLock l(&n->mu);
      Vm& vm = n->vms.at(r.vm());
      ASSIGN_OR_RETURN(Resources permit, AmountFromProto(r.permit(), "permit"));
      ASSIGN_OR_RETURN(Resources requested, AmountFromProto(r.requested(), "requested"));
      if (absl::Status s = CheckSize(permit, vm.cu, vm.bounds, "permit"); !s.ok()) {
        return Corrupt(absl::StrCat("VM ", r.vm(), ": ", s.message()));
      }
      if (vm.migration) return Corrupt(absl::StrCat("resize of migrating VM ", r.vm()));
      n->Uncount(vm);
      vm.permit = permit;
      vm.requested = requested;
      n->Count(vm);
      return absl::OkStatus();
    }
    case LedgerRecord::kVmReleased: {
      auto found = vm_index_.find(record.vm_released());
      if (found == vm_index_.end()) {
        return Corrupt(absl::StrCat("release of unknown VM ", record.vm_released()));
      }
      Node* src = found->second;
      Node* dst = nullptr;
      {
        absl::MutexLock l(&src->mu);
        const Vm& vm = src->vms.at(record.vm_released());
        if (vm.migration) dst = registry_->by_name.at(vm.migration->target_node);
      }
      TwoLocks locks(src, dst);
      if (dst != nullptr) {
        const Incoming in = dst->incoming.at(record.vm_released());
        dst->reserved = dst->reserved - in.share;
        dst->committed = dst->committed - in.amount;
        dst->incoming.erase(record.vm_released());
      }
      src->Forget(record.vm_released());
      vm_index_.erase(found);
      return absl::OkStatus();
    }
    case LedgerRecord::kMigrationStarted: {
      const MigrationRecord& m = record.migration_started();
      auto found = vm_index_.find(m.vm());
      auto t = registry_->by_name.find(m.target_node());
      if (found == vm_index_.end() || found->second->name != m.source_node() ||
          t == registry_->by_name.end() || t->second == found->second) {
        return Corrupt(absl::StrCat("migration ", m.id(), " of VM ", m.vm(), " from ",
                                    m.source_node(), " to ", m.target_node()));
      }
      Node* src = found->second;
      Node* dst = t->second;
      TwoLocks locks(src, dst);
      Vm& vm = src->vms.at(m.vm());
      if (vm.migration) return Corrupt(absl::StrCat("VM ", m.vm(), " migrates twice"));
      src->Uncount(vm);
      vm.migration = MigrationOrder{.id = m.id(),
                                    .vm = m.vm(),
                                    .source_node = src->name,
                                    .target_node = dst->name,
                                    .target_agent_address = m.target_agent_address()};
      src->Count(vm);
      const Resources share = vm.share();
      dst->incoming[m.vm()] = {m.id(), vm.permit, share};
      dst->reserved = dst->reserved + share;
      dst->committed = dst->committed + vm.permit;
      next_migration_id_ = std::max(next_migration_id_, m.id() + 1);
      return absl::OkStatus();
    }
    case LedgerRecord::kMigrationEnded: {
      const MigrationEnded& e = record.migration_ended();
      auto found = vm_index_.find(e.vm());
      if (found == vm_index_.end()) return Corrupt(absl::StrCat("end of unknown VM ", e.vm()));
      Node* src = found->second;
      Node* dst;
      {
        absl::MutexLock l(&src->mu);
        const Vm& vm = src->vms.at(e.vm());
        if (!vm.migration || vm.migration->id != e.id()) {
          return Corrupt(absl::StrCat("end of unknown migration ", e.id(), " of VM ", e.vm()));
        }
        dst = registry_->by_name.at(vm.migration->target_node);
      }
      TwoLocks locks(src, dst);
      const Incoming in = dst->incoming.at(e.vm());
      dst->reserved = dst->reserved - in.share;
      dst->committed = dst->committed - in.amount;
      dst->incoming.erase(e.vm());
      Vm vm = src->vms.at(e.vm());
      src->Forget(e.vm());
      vm.migration.reset();
      if (e.succeeded()) {
        dst->Add(e.vm(), std::move(vm));
      } else {
        src->Add(e.vm(), std::move(vm));
      }
      found->second = e.succeeded() ? dst : src;
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
    for (const NodeRecord& n : state.snapshot->nodes()) {
      LedgerRecord r;
      *r.mutable_node_registered() = n;
      RETURN_IF_ERROR(Annotate(ApplyRecord(r), recovery_.snapshot_file));
    }
    // Placed without their migrations first, so that every target exists when those are added.
    for (const VmRecord& v : state.snapshot->vms()) {
      LedgerRecord r;
      *r.mutable_vm_placed() = v;
      r.mutable_vm_placed()->clear_migration();
      RETURN_IF_ERROR(Annotate(ApplyRecord(r), recovery_.snapshot_file));
    }
    for (const VmRecord& v : state.snapshot->vms()) {
      if (!v.has_migration()) continue;
      LedgerRecord r;
      *r.mutable_migration_started() = v.migration();
      RETURN_IF_ERROR(Annotate(ApplyRecord(r), recovery_.snapshot_file));
    }
    next_migration_id_ = std::max(next_migration_id_, state.snapshot->next_migration_id());
  }
  const uint64_t first_seq = state.last_seq - state.records.size() + 1;
  for (size_t i = 0; i < state.records.size(); ++i) {
    RETURN_IF_ERROR(
        Annotate(ApplyRecord(state.records[i]), absl::StrCat("record ", first_seq + i)));
  }
  // What agents did while the scheduler was down is unknown until they speak.
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
