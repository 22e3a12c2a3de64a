// The one mutation path: every change to the ledger's state, whether an operation just decided it
// (ledger.cc) or recovery read it back from the log (recovery.cc), is applied here. Nothing here
// decides or validates: the callers have checked the change against the state, under the locks
// it needs, before calling.
//
// What is not changed here, and why: a VM's `heard` flag and its node's `unheard` count (what
// this process has heard since it started, see internal::Vm::heard), the sequence numbers that
// answers wait for (`last_seq`), and counters. replay_equivalence_test checks that a ledger
// rebuilt from the log equals the live one.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/internal/records.h"
#include "autoscale/ledger/ledger.h"

namespace autoscale::ledger {

namespace change = internal::change;

// The node's lock is held by the caller when `node` is given (checked), which the analysis cannot
// follow; so for the others below.
Ledger::Node* Ledger::Apply(const change::NodeRegistered& c,
                            Node* node) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  const bool created = node == nullptr;
  if (created) {
    nodes_.push_back(std::make_unique<Node>(std::string(c.name)));
    node = nodes_.back().get();
    // Filled in before it is published, so lock-free readers never see it empty.
    node->mu.Lock();
  }
  node->mu.AssertHeld();
  node->total = c.total;
  node->watermark_fraction = c.watermark;
  node->agent_address = std::string(c.agent_address);
  node->cordoned = c.cordoned;
  node->draining = c.draining;
  // A total lowered below what is reserved: accepted, and the node marked (see Node::Settle).
  node->over_capacity = node->reserved.AnyGreaterThan(node->total);
  if (created) {
    node->mu.Unlock();
    auto next = std::make_shared<Registry>(*registry_);
    next->by_name[node->name] = node;
    next->sorted.insert(std::upper_bound(next->sorted.begin(), next->sorted.end(), node,
                                         [](Node* a, Node* b) { return a->name < b->name; }),
                        node);
    registry_ = std::move(next);
    registry_version_.fetch_add(1, std::memory_order_release);
  }
  return node;
}

void Ledger::Apply(const change::NodeRemoved& c, Node& node) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  node.mu.AssertHeld();
  // Migrations to it end as failed: their VMs stay where they are.
  for (const auto& [name, in] : node.incoming) {
    Node& src = *vm_index_.at(name);
    src.mu.AssertHeld();
    Vm& vm = src.vms.at(name);
    src.Uncount(vm);
    vm.migration.reset();
    src.Count(vm);
  }
  node.incoming.clear();
  // Its VMs go with it, and with them their reservations on the targets of their migrations.
  for (const auto& [name, vm] : node.vms) {
    if (vm.migration) {
      Node& dst = *registry_->by_name.at(vm.migration->target_node);
      dst.mu.AssertHeld();
      dst.ForgetIncoming(name);
      dst.Settle();
    }
    vm_index_.erase(name);
  }
  node.vms.clear();
  ++node.layout;
  node.reserved = node.committed = node.migrating = Resources{};
  node.unheard = 0;
  node.removed = true;
  auto next = std::make_shared<Registry>(*registry_);
  next->by_name.erase(node.name);
  next->sorted.erase(std::find(next->sorted.begin(), next->sorted.end(), &node));
  registry_ = std::move(next);
  registry_version_.fetch_add(1, std::memory_order_release);
  for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
    if (it->get() == &node) {
      removed_nodes_.push_back(std::move(*it));
      nodes_.erase(it);
      break;
    }
  }
  (void)c;
}

void Ledger::Apply(const change::VmBoundsChanged& c, Node& node,
                   Vm& vm) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  node.mu.AssertHeld();
  vm.bounds = c.bounds;
}

Ledger::Vm& Ledger::Apply(const change::VmPlaced& c, Node& node) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  node.mu.AssertHeld();
  Vm& vm = node.Add(std::string(c.name), Vm(c.vm));
  vm_index_[c.name] = &node;
  return vm;
}

void Ledger::Apply(const change::VmResized& c, Node& node, Vm& vm) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  node.mu.AssertHeld();
  node.Uncount(vm);
  vm.permit = c.permit;
  vm.requested = c.requested;
  node.Count(vm);
  node.Settle();
}

void Ledger::Apply(const change::VmReleased& c, Node& src,
                   Node* dst) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  src.mu.AssertHeld();
  const std::string name(c.vm);
  if (dst != nullptr) {
    dst->mu.AssertHeld();
    dst->ForgetIncoming(name);
    dst->Settle();
  }
  src.Forget(name);
  src.Settle();
  vm_index_.erase(name);
}

Ledger::Vm& Ledger::Apply(const change::MigrationStarted& c, Node& src,
                          Node& dst) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  src.mu.AssertHeld();
  dst.mu.AssertHeld();
  Vm& vm = src.vms.at(c.order.vm);
  src.Uncount(vm);
  vm.migration = c.order;
  src.Count(vm);
  dst.AddIncoming(c.order.vm, {.order_id = c.order.id, .amount = vm.permit, .share = vm.share()});
  next_migration_id_ = std::max(next_migration_id_, c.order.id + 1);
  return vm;
}

Ledger::Vm& Ledger::Apply(const change::MigrationEnded& c, Node& src,
                          Node& dst) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  src.mu.AssertHeld();
  dst.mu.AssertHeld();
  const std::string name(c.vm);
  dst.ForgetIncoming(name);
  Vm vm = src.Forget(name);
  vm.migration.reset();
  Node& home = c.succeeded ? dst : src;
  vm_index_[name] = &home;
  Vm& placed = home.Add(name, std::move(vm));
  src.Settle();
  dst.Settle();
  return placed;
}

}  // namespace autoscale::ledger
