#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/internal/records.h"
#include "autoscale/ledger/ledger.h"

// The ledger's invariants, recomputed from scratch: for tests and fuzzing.

namespace autoscale::ledger {

using internal::Node;

absl::Status Ledger::CheckInvariants() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  absl::MutexLock rl(&registry_mu_);
  LockAll();
  absl::Cleanup unlock = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { UnlockAll(); };
  {
    size_t vms = 0;
    for (Node* n : registry_->sorted) {
      const std::string ctx = absl::StrCat("node ", n->name);
      Resources reserved, committed, migrating;
      int64_t unheard = 0;
      for (const auto& [name, vm] : n->vms) {
        ++vms;
        if (!vm.heard) ++unheard;
        RETURN_IF_ERROR(Annotate(internal::CheckWholeUnits(vm.permit, vm.cu, "permit"),
                                 absl::StrCat(ctx, " VM ", name)));
        auto idx = vm_index_.find(name);
        if (idx == vm_index_.end() || idx->second != n) {
          return absl::InternalError(absl::StrCat(ctx, ": VM ", name, " is not indexed here"));
        }
        reserved = reserved + vm.share();
        committed = committed + vm.permit;
        if (vm.migration) {
          migrating = migrating + vm.share();
          auto t = registry_->by_name.find(vm.migration->target_node);
          if (t == registry_->by_name.end() || t->second == n ||
              vm.migration->source_node != n->name) {
            return absl::InternalError(absl::StrCat(ctx, ": VM ", name, " migrates nowhere"));
          }
          auto in = t->second->incoming.find(name);
          if (in == t->second->incoming.end() || in->second.order_id != vm.migration->id ||
              in->second.share != vm.share() || in->second.amount != vm.permit) {
            return absl::InternalError(absl::StrCat(
                ctx, ": VM ", name, " is not reserved on its target ", vm.migration->target_node));
          }
        }
      }
      for (const auto& [name, in] : n->incoming) {
        reserved = reserved + in.share;
        committed = committed + in.amount;
        auto idx = vm_index_.find(name);
        if (idx == vm_index_.end() || idx->second == n) {
          return absl::InternalError(absl::StrCat(ctx, ": incoming VM ", name, " has no source"));
        }
      }
      if (reserved != n->reserved || committed != n->committed || migrating != n->migrating) {
        return absl::InternalError(absl::StrCat(
            ctx, ": sums reserved/committed/migrating ", n->reserved.ToString(), " ",
            n->committed.ToString(), " ", n->migrating.ToString(), " but its VMs add up to ",
            reserved.ToString(), " ", committed.ToString(), " ", migrating.ToString()));
      }
      if (unheard != n->unheard) {
        return absl::InternalError(
            absl::StrCat(ctx, ": unheard count ", n->unheard, " != ", unheard));
      }
      // Above its total only after an operator lowered the total below what it had reserved
      // (and no grant since: Settle clears the mark once it fits).
      if (n->reserved.AnyGreaterThan(n->total) && !n->over_capacity) {
        return absl::InternalError(absl::StrCat(ctx, ": reserved ", n->reserved.ToString(),
                                                " exceeds the total ", n->total.ToString()));
      }
      if (n->over_capacity && !n->reserved.AnyGreaterThan(n->total)) {
        return absl::InternalError(absl::StrCat(ctx, ": marked over capacity but fits"));
      }
      if (n->draining && !n->cordoned) {
        return absl::InternalError(absl::StrCat(ctx, ": draining but not cordoned"));
      }
    }
    if (vms != vm_index_.size()) {
      return absl::InternalError(
          absl::StrCat(vm_index_.size(), " VMs indexed but ", vms, " on nodes"));
    }
    return absl::OkStatus();
  }
}

}  // namespace autoscale::ledger
