// LedgerPeer (testonly): reads the whole state of two ledgers and names every difference, for
// the tests that rebuild a ledger from its store and compare it with the one that wrote it
// (replay_equivalence_test, crash_consistency_test).
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/ledger.h"

namespace autoscale::ledger {
namespace internal {

// The ledger names this struct its friend: it reads the whole state of two ledgers.
struct LedgerPeer {
  // Every difference between the states of `live` and `rebuilt`, in words; empty if none.
  static std::vector<std::string> Diff(const Ledger& live,
                                       const Ledger& rebuilt) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    absl::MutexLock la(&live.registry_mu_);
    absl::MutexLock lb(&rebuilt.registry_mu_);
    live.LockAll();
    rebuilt.LockAll();
    absl::Cleanup unlock = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      rebuilt.UnlockAll();
      live.UnlockAll();
    };
    std::vector<std::string> out;
    auto differ = [&](const std::string& what, const auto& a, const auto& b) {
      if (!(a == b)) out.push_back(absl::StrCat(what, ": live ", Str(a), ", rebuilt ", Str(b)));
    };
    differ("node names", Names(live), Names(rebuilt));
    for (const Ledger* l : {&live, &rebuilt}) {
      const std::string which = l == &live ? "live" : "rebuilt";
      if (l->nodes_.size() != l->registry_->sorted.size() ||
          l->registry_->by_name.size() != l->registry_->sorted.size()) {
        out.push_back(absl::StrCat(which, ": ", l->nodes_.size(), " nodes, ",
                                   l->registry_->by_name.size(), " by name, ",
                                   l->registry_->sorted.size(), " sorted"));
      }
    }
    for (const Node* a : live.registry_->sorted) {
      auto found = rebuilt.registry_->by_name.find(a->name);
      if (found == rebuilt.registry_->by_name.end()) continue;  // reported with the names
      const Node* b = found->second;
      const std::string n = absl::StrCat("node ", a->name);
      differ(n + " total", a->total, b->total);
      differ(n + " watermark", a->watermark_fraction, b->watermark_fraction);
      differ(n + " agent address", a->agent_address, b->agent_address);
      differ(n + " cordoned", a->cordoned, b->cordoned);
      differ(n + " draining", a->draining, b->draining);
      differ(n + " over capacity", a->over_capacity, b->over_capacity);
      differ(n + " reserved", a->reserved, b->reserved);
      differ(n + " committed", a->committed, b->committed);
      differ(n + " migrating", a->migrating, b->migrating);
      differ(n + " VMs", Keys(a->vms), Keys(b->vms));
      for (const auto& [name, vm] : a->vms) {
        auto other = b->vms.find(name);
        if (other == b->vms.end()) continue;
        // Every field the log determines (VmState's ==, so a field added later is compared
        // too); `heard` and `last_seq` are this process's own (see internal::Vm).
        differ(absl::StrCat(n, " VM ", name), static_cast<const VmState&>(vm),
               static_cast<const VmState&>(other->second));
      }
      differ(n + " incoming", Incomings(*a), Incomings(*b));
    }
    differ("VM index", Index(live), Index(rebuilt));
    differ("next migration id", live.next_migration_id_, rebuilt.next_migration_id_);
    return out;
  }

 private:
  static std::string Str(const std::string& s) { return "\"" + s + "\""; }
  static std::string Str(double d) { return absl::StrCat(d); }
  static std::string Str(bool b) { return b ? "true" : "false"; }
  static std::string Str(uint64_t i) { return absl::StrCat(i); }
  static std::string Str(const Resources& r) { return r.ToString(); }
  static std::string Str(const std::vector<std::string>& v) {
    return "[" + absl::StrJoin(v, " ") + "]";
  }
  static std::string Str(const std::map<std::string, std::string>& m) {
    return "{" + absl::StrJoin(m, " ", absl::PairFormatter("->")) + "}";
  }
  static std::string Str(const std::optional<MigrationOrder>& o) {
    if (!o) return "none";
    return absl::StrCat("#", o->id, " ", o->vm, " ", o->source_node, "->", o->target_node, " @",
                        o->target_agent_address, " at ", absl::FormatTime(o->started));
  }
  static std::string Str(const VmState& v) {
    return absl::StrCat("{bounds ", v.bounds.min_cu, "..", v.bounds.max_cu, " cu ", v.cu.ToString(),
                        " permit ", v.permit.ToString(), " requested ", v.requested.ToString(),
                        " overcommit ", v.overcommit.cpu_milli, "/", v.overcommit.memory_milli,
                        " migratable ", v.migratable, " created ", absl::FormatTime(v.created),
                        " migration ", Str(v.migration), "}");
  }
  static std::vector<std::string> Names(const Ledger& l) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::vector<std::string> out;
    for (const Node* n : l.registry_->sorted) out.push_back(n->name);
    return out;
  }
  template <typename Map>
  static std::vector<std::string> Keys(const Map& m) {
    std::vector<std::string> out;
    for (const auto& [k, v] : m) out.push_back(k);
    std::sort(out.begin(), out.end());
    return out;
  }
  static std::map<std::string, std::string> Incomings(const Node& n)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::map<std::string, std::string> out;
    for (const auto& [vm, in] : n.incoming) {
      out[vm] =
          absl::StrCat("#", in.order_id, " ", in.amount.ToString(), " share ", in.share.ToString());
    }
    return out;
  }
  static std::map<std::string, std::string> Index(const Ledger& l) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::map<std::string, std::string> out;
    for (const auto& [vm, node] : l.vm_index_) out[vm] = node->name;
    return out;
  }
};

}  // namespace internal

}  // namespace autoscale::ledger
