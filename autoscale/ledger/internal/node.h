// Node accounting: a node's VMs, the sums they add up to, and the grant rule. Private to the
// ledger library.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/ledger.h"

namespace autoscale::ledger::internal {

// What a node reserves for `amount` of one resource under `factor_milli`: rounded up. (Inline:
// the request path computes shares several times.)
inline int64_t ShareOf(int64_t amount, uint32_t factor_milli) {
  // amount <= kMaxAmount (2^50), so amount * 1000 fits.
  return (amount * 1000 + factor_milli - 1) / factor_milli;
}

// What a VM holding `have` gets when it asks for `want`: a decrease (or no change) as asked; an
// increase in whole steps of `step` as long as its node's reservation stays within `total`, the
// node reserving `others` for everything else (section 3.3 of the reference, with the share
// rounded up so that the node's sum can never pass its total).
int64_t Grant(int64_t have, int64_t want, int64_t step, int64_t total, int64_t others,
              uint32_t factor_milli);

// What the ledger knows of a VM that its log holds (a VmPlaced record, its resizes and
// migrations; a snapshot's VmRecord). Recovery rebuilds exactly this, so equality is defined on it.
struct VmState {
  Bounds bounds;
  Resources cu;
  // What the VM may use: its permit (the node reserves its share of it, NodeShare).
  Resources permit;
  // What its agent last asked for.
  Resources requested;
  Overcommit overcommit;
  bool migratable = false;
  // Microseconds, as the log keeps it.
  absl::Time created;
  // Set while the VM migrates away.
  std::optional<MigrationOrder> migration;

  friend bool operator==(const VmState&, const VmState&) = default;
};

// A VM on a node: its state and what only this process knows of it. Comparing two Vms compares
// their states only.
struct Vm : VmState {
  Vm() = default;
  explicit Vm(VmState state) : VmState(std::move(state)) {}

  // False after a restart until the VM's agent has been heard from. Deliberately not logged:
  // it says what this process has heard since it started, so recovery starts every VM unheard
  // whatever the log says, and replaying records never changes it (a VM keeps its flag when it
  // moves between nodes). Only the operations set it, when an agent speaks (Request) or a
  // migration ends (EndMigration).
  bool heard = true;
  // Sequence number of the VM's latest record: answers about it wait until it is durable.
  uint64_t last_seq = 0;

  // NodeShare(permit, overcommit).
  Resources share() const {
    return {ShareOf(permit.milli_cpu, overcommit.cpu_milli),
            ShareOf(permit.memory_bytes, overcommit.memory_milli)};
  }
};

// A VM migrating to a node: reserved there until the migration ends.
struct Incoming {
  uint64_t order_id = 0;
  Resources amount;
  Resources share;
};

struct Node {
  explicit Node(std::string n) : name(std::move(n)) {}

  const std::string name;
  // Guards everything below: the node's totals and sums, and its VMs.
  mutable absl::Mutex mu;
  Resources total ABSL_GUARDED_BY(mu);
  double watermark_fraction ABSL_GUARDED_BY(mu) = 0;
  std::string agent_address ABSL_GUARDED_BY(mu);
  // No placements, no incoming migrations; draining: and its migratable VMs are ordered away.
  bool cordoned ABSL_GUARDED_BY(mu) = false;
  bool draining ABSL_GUARDED_BY(mu) = false;
  // Its total was lowered below what it had reserved, and it still is above its total. The one
  // way a node's reservation may exceed its total (CheckInvariants).
  bool over_capacity ABSL_GUARDED_BY(mu) = false;
  // Removed from the ledger (a stale registry copy may still lead here).
  bool removed ABSL_GUARDED_BY(mu) = false;
  Resources reserved ABSL_GUARDED_BY(mu);
  Resources committed ABSL_GUARDED_BY(mu);
  Resources migrating ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Vm> vms ABSL_GUARDED_BY(mu);
  // Bumped whenever `vms` gains or loses an entry (which may move the others): a VmHandle taken
  // at another layout is looked up again.
  uint64_t layout ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_map<std::string, Incoming> incoming ABSL_GUARDED_BY(mu);
  // VMs not heard from since a restart, and until when that stops growth on the node.
  int64_t unheard ABSL_GUARDED_BY(mu) = 0;
  absl::Time awaiting_until ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  // Sequence number of the node's latest registration record.
  uint64_t last_seq ABSL_GUARDED_BY(mu) = 0;

  Resources Watermark() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return {static_cast<int64_t>(static_cast<double>(total.milli_cpu) * watermark_fraction),
            static_cast<int64_t>(static_cast<double>(total.memory_bytes) * watermark_fraction)};
  }
  bool Awaiting(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return unheard > 0 && now < awaiting_until;
  }
  bool Fits(const Resources& share, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return !cordoned && !Awaiting(now) && (reserved + share).FitsIn(total);
  }
  bool AboveWatermark() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return (reserved - migrating).AnyGreaterThan(Watermark());
  }
  // A migration target: the VM fits, and the node stays at or under its own watermark with it
  // (a target pushed above it would send the VM, or another, straight back).
  bool TakesMigration(const Resources& share, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return Fits(share, now) && !(reserved - migrating + share).AnyGreaterThan(Watermark());
  }
  // Adds a VM to (removes it from) the node's sums.
  void Count(const Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Resources s = vm.share();
    reserved = reserved + s;
    committed = committed + vm.permit;
    if (vm.migration) migrating = migrating + s;
  }
  void Uncount(const Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Resources s = vm.share();
    reserved = reserved - s;
    committed = committed - vm.permit;
    if (vm.migration) migrating = migrating - s;
  }
  // Adds a VM (removes one) with its sums and its unheard count.
  Vm& Add(const std::string& vm_name, Vm vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Count(vm);
    if (!vm.heard) ++unheard;
    ++layout;
    return vms.emplace(vm_name, std::move(vm)).first->second;
  }
  Vm Forget(const std::string& vm_name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = vms.find(vm_name);
    Vm vm = std::move(it->second);
    vms.erase(it);
    ++layout;
    Uncount(vm);
    if (!vm.heard) --unheard;
    return vm;
  }
  // Reserves (releases) an incoming migration's share on this node, its target.
  void AddIncoming(const std::string& vm_name, const Incoming& in)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    reserved = reserved + in.share;
    committed = committed + in.amount;
    incoming[vm_name] = in;
  }
  void ForgetIncoming(const std::string& vm_name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = incoming.find(vm_name);
    reserved = reserved - it->second.share;
    committed = committed - it->second.amount;
    incoming.erase(it);
  }
  // After a change: a node over capacity stops being so once its reservation fits its total.
  void Settle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    over_capacity = over_capacity && reserved.AnyGreaterThan(total);
  }
  // The VM's agent has spoken since the restart (volatile, see Vm::heard).
  void MarkHeard(Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (vm.heard) return;
    vm.heard = true;
    --unheard;
  }

  NodeInfo Info(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return {.name = name,
            .total = total,
            .watermark_fraction = watermark_fraction,
            .watermark = Watermark(),
            .reserved = reserved,
            .committed = committed,
            .migrating = migrating,
            .agent_address = agent_address,
            .awaiting_agent = Awaiting(now),
            .vm_count = vms.size(),
            .cordoned = cordoned,
            .draining = draining,
            .over_capacity = over_capacity};
  }
};

// The public view of a VM.
inline VmInfo InfoOf(const std::string& name, const std::string& node, const VmState& vm) {
  return {.name = name,
          .node = node,
          .bounds = vm.bounds,
          .compute_unit = vm.cu,
          .permit = vm.permit,
          .requested = vm.requested,
          .overcommit = vm.overcommit,
          .migratable = vm.migratable,
          .created = vm.created,
          .migration = vm.migration};
}

// The node lookup table. Immutable once published; a new one replaces it when a node is added.
struct Registry {
  absl::flat_hash_map<std::string, Node*> by_name;
  // Sorted by name: the order in which several nodes are locked.
  std::vector<Node*> sorted;
};

// Locks a set of nodes in name order (the order every holder of several node locks follows).
class LockSet {
 public:
  explicit LockSet(std::vector<Node*> nodes) ABSL_NO_THREAD_SAFETY_ANALYSIS
      : nodes_(std::move(nodes)) {
    std::sort(nodes_.begin(), nodes_.end(), [](Node* a, Node* b) { return a->name < b->name; });
    nodes_.erase(std::unique(nodes_.begin(), nodes_.end()), nodes_.end());
    for (Node* n : nodes_) n->mu.Lock();
  }
  ~LockSet() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->mu.Unlock();
  }
  LockSet(const LockSet&) = delete;
  LockSet& operator=(const LockSet&) = delete;

 private:
  std::vector<Node*> nodes_;
};

// Locks two nodes (or one, when they are the same or the second is null) in name order.
class ABSL_SCOPED_LOCKABLE TwoLocks {
 public:
  TwoLocks(Node* a, Node* b)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(a->mu, b->mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    first_ = a;
    if (b != nullptr && b != a) {
      second_ = b;
      if (b->name < a->name) std::swap(first_, second_);
    }
    first_->mu.Lock();
    if (second_ != nullptr) second_->mu.Lock();
  }
  ~TwoLocks() ABSL_UNLOCK_FUNCTION() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (second_ != nullptr) second_->mu.Unlock();
    first_->mu.Unlock();
  }
  TwoLocks(const TwoLocks&) = delete;
  TwoLocks& operator=(const TwoLocks&) = delete;

 private:
  Node* first_ = nullptr;
  Node* second_ = nullptr;
};

}  // namespace autoscale::ledger::internal
