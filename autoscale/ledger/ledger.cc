#include "autoscale/ledger/ledger.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/internal/records.h"
#include "glog/logging.h"

// The ledger's operations: requests, placement, release, migrations, node registration, reads.
// Recovery and snapshots are in recovery.cc, the invariant check in invariants.cc.

namespace autoscale::ledger {

using internal::CheckAmount;
using internal::CheckPlaceVmRequest;
using internal::CheckSize;
using internal::Grant;
using internal::Registry;
using internal::TwoLocks;
namespace change = internal::change;

namespace {

std::atomic<uint64_t> next_ledger_id{1};

}  // namespace

struct Ledger::Candidate {
  Node* node;
  int64_t score;
};

Ledger::Ledger(LedgerOptions options) : Ledger(std::move(options), nullptr) {}

Ledger::Ledger(LedgerOptions options, std::unique_ptr<LedgerStore> store)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : Clock::Real()),
      policy_(options_.migration_policy != nullptr
                  ? options_.migration_policy
                  : std::shared_ptr<const MigrationPolicy>(NewOldestFirstPolicy())),
      store_(std::move(store)),
      id_(next_ledger_id.fetch_add(1)),
      rng_(options_.seed) {
  absl::MutexLock l(&registry_mu_);
  registry_ = std::make_shared<Registry>();
}

Ledger::~Ledger() = default;

// --- registry ---

Ledger::Node* Ledger::FindNode(std::string_view name) const {
  // Each thread keeps the registry it last saw and refreshes it only when a node was added, so
  // lookups share no lock and no written cache line.
  struct Cache {
    uint64_t ledger = 0;
    uint64_t version = 0;
    std::shared_ptr<const Registry> registry;
  };
  thread_local Cache cache;
  if (cache.ledger != id_ || cache.version != registry_version_.load(std::memory_order_acquire)) {
    absl::ReaderMutexLock l(&registry_mu_);
    cache.registry = registry_;
    cache.version = registry_version_.load(std::memory_order_relaxed);
    cache.ledger = id_;
  }
  auto it = cache.registry->by_name.find(absl::string_view(name.data(), name.size()));
  return it == cache.registry->by_name.end() ? nullptr : it->second;
}

void Ledger::LockAll() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (Node* n : registry_->sorted) n->mu.Lock();
}

void Ledger::UnlockAll() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (auto it = registry_->sorted.rbegin(); it != registry_->sorted.rend(); ++it) {
    (*it)->mu.Unlock();
  }
}

// --- durability ---

uint64_t Ledger::Log(const LedgerRecord& record) { return store_->Append(record); }

absl::Status Ledger::WaitDurable(uint64_t seq) {
  if (store_ == nullptr || seq == 0) return absl::OkStatus();
  absl::Notification done;
  absl::Status status;
  store_->WhenDurable(seq, [&](absl::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("ledger: the change could not be made durable: ", status.message()));
  }
  return absl::OkStatus();
}

std::optional<StoreStats> Ledger::store_stats() const {
  if (store_ == nullptr) return std::nullopt;
  return store_->Stats();
}

// --- nodes ---

absl::StatusOr<NodeInfo> Ledger::RegisterNode(const NodeSpec& spec) {
  const std::string ctx = absl::StrCat("register node ", spec.name);
  if (spec.name.empty()) return absl::InvalidArgumentError("register node: empty name");
  RETURN_IF_ERROR(Annotate(CheckAmount(spec.total, "total"), ctx));
  if (spec.total.milli_cpu == 0 || spec.total.memory_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": total ", spec.total.ToString(), " must be > 0 in both resources"));
  }
  if (!(spec.watermark >= 0 && spec.watermark <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": watermark ", spec.watermark, " is outside (0, 1]"));
  }
  const change::NodeRegistered change{
      .name = spec.name,
      .total = spec.total,
      .watermark = spec.watermark == 0 ? options_.default_watermark : spec.watermark,
      .agent_address = spec.agent_address};
  uint64_t wait = 0;
  NodeInfo info;
  {
    absl::MutexLock rl(&registry_mu_);
    auto found = registry_->by_name.find(spec.name);
    Node* node = found == registry_->by_name.end() ? nullptr : found->second;
    if (node == nullptr) {
      node = Apply(change, nullptr);
      absl::MutexLock nl(&node->mu);
      if (store_ != nullptr) node->last_seq = Log(internal::ToRecord(change));
      wait = node->last_seq;
      info = node->Info(clock_.Now());
    } else {
      absl::MutexLock nl(&node->mu);
      if (node->reserved.AnyGreaterThan(spec.total)) {
        return absl::FailedPreconditionError(
            absl::StrCat(ctx, ": the node has ", node->reserved.ToString(),
                         " reserved, more than the new total ", spec.total.ToString()));
      }
      if (node->total != change.total || node->watermark_fraction != change.watermark ||
          node->agent_address != change.agent_address) {
        Apply(change, node);
        if (store_ != nullptr) node->last_seq = Log(internal::ToRecord(change));
      }
      wait = node->last_seq;
      info = node->Info(clock_.Now());
    }
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return info;
}

// --- requests ---

absl::StatusOr<Permit> Ledger::AnswerRequest(const PermitRequest& r, uint64_t* wait_seq) {
  Node* node = FindNode(r.node);
  if (node == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("request for VM ", r.vm, ": node ", r.node, " is not registered"));
  }
  absl::MutexLock l(&node->mu);
  auto it = node->vms.find(r.vm);
  if (it == node->vms.end()) {
    return absl::NotFoundError(
        absl::StrCat("request for VM ", r.vm, ": no VM of that name on node ", r.node));
  }
  Vm& vm = it->second;
  if (r.compute_unit != vm.cu) {
    return absl::InvalidArgumentError(absl::StrCat("request for VM ", r.vm, ": compute unit ",
                                                   r.compute_unit.ToString(), " is not the VM's ",
                                                   vm.cu.ToString()));
  }
  if (absl::Status s = CheckSize(r.resources, vm.cu, vm.bounds, "resources"); !s.ok()) {
    return Annotate(s, absl::StrCat("request for VM ", r.vm));
  }
  if (r.last_permit) {
    if (absl::Status s = CheckSize(*r.last_permit, vm.cu, vm.bounds, "last permit"); !s.ok()) {
      return Annotate(s, absl::StrCat("request for VM ", r.vm));
    }
  }

  // What the VM holds before this request is granted.
  Resources have = vm.permit;
  if (!vm.heard) {
    // The first word from this VM's agent since a restart. A permit above what the log holds
    // means the log lost it: the VM may be using it, so the ledger takes it back.
    node->MarkHeard(vm);
    if (r.last_permit && r.last_permit->AnyGreaterThan(vm.permit) && vm.migration) {
      // Its reservation is on two nodes and fixed until the migration ends; the log holds no
      // resize of a migrating VM.
      LOG(WARNING) << "VM " << r.vm << " on node " << r.node << ": the agent's last permit "
                   << r.last_permit->ToString() << " is above the ledger's " << vm.permit.ToString()
                   << ", but the VM is migrating: not adopted";
    } else if (r.last_permit && r.last_permit->AnyGreaterThan(vm.permit)) {
      LOG(WARNING) << "VM " << r.vm << " on node " << r.node << ": the agent's last permit "
                   << r.last_permit->ToString() << " is above the ledger's " << vm.permit.ToString()
                   << "; adopting it";
      have = Resources::Max(vm.permit, *r.last_permit);
      adopted_permits_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  change::VmResized change{.node = r.node, .vm = r.vm, .permit = have, .requested = vm.requested};
  // A migrating VM is not resized (it has a reservation on two nodes).
  if (!vm.migration) {
    const Resources& want = r.resources;
    change.requested = want;
    change.permit = want;  // a decrease (or no change) as asked
    if (want.AnyGreaterThan(have)) {
      // An increase: none while the node waits for its agents after a restart (the clock only
      // read then), else what the node has room for beside its other VMs.
      const bool frozen = node->unheard > 0 && node->Awaiting(clock_.Now());
      const Resources others = node->reserved - vm.share();
      if (want.milli_cpu > have.milli_cpu) {
        change.permit.milli_cpu =
            frozen ? have.milli_cpu
                   : Grant(have.milli_cpu, want.milli_cpu, vm.cu.milli_cpu, node->total.milli_cpu,
                           others.milli_cpu, vm.overcommit.cpu_milli);
      }
      if (want.memory_bytes > have.memory_bytes) {
        change.permit.memory_bytes =
            frozen
                ? have.memory_bytes
                : Grant(have.memory_bytes, want.memory_bytes, vm.cu.memory_bytes,
                        node->total.memory_bytes, others.memory_bytes, vm.overcommit.memory_milli);
      }
    }
  }
  if (change.permit != vm.permit || change.requested != vm.requested) {
    Apply(change, *node, vm);
    if (store_ != nullptr) vm.last_seq = Log(internal::ToRecord(change));
  }
  *wait_seq = vm.last_seq;
  return Permit{.resources = vm.permit, .migration = vm.migration};
}

absl::StatusOr<Permit> Ledger::Request(const PermitRequest& request) {
  uint64_t seq = 0;
  ASSIGN_OR_RETURN(Permit permit, AnswerRequest(request, &seq));
  RETURN_IF_ERROR(WaitDurable(seq));
  return permit;
}

void Ledger::RequestAsync(const PermitRequest& request,
                          std::function<void(absl::StatusOr<Permit>)> done) {
  uint64_t seq = 0;
  absl::StatusOr<Permit> permit = AnswerRequest(request, &seq);
  if (!permit.ok() || store_ == nullptr || seq == 0) {
    done(std::move(permit));
    return;
  }
  store_->WhenDurable(seq, [permit = *std::move(permit), done = std::move(done)](absl::Status s) {
    if (s.ok()) {
      done(permit);
    } else {
      done(absl::UnavailableError(
          absl::StrCat("ledger: the change could not be made durable: ", s.message())));
    }
  });
}

// --- placement ---

std::vector<Ledger::Candidate> Ledger::RankNodes(const Resources& share,
                                                 const Node* migrating_from) {
  const absl::Time now = clock_.Now();
  struct Seen {
    Node* node;
    Resources reserved, total;
    bool fits;
  };
  std::vector<Seen> seen;
  Resources largest;
  for (Node* n : registry_->sorted) {
    if (n == migrating_from) continue;
    absl::MutexLock l(&n->mu);
    const bool fits =
        migrating_from != nullptr ? n->TakesMigration(share, now) : n->Fits(share, now);
    seen.push_back({n, n->reserved, n->total, fits});
    largest = Resources::Max(largest, n->total);
  }
  std::vector<Candidate> fit;
  std::vector<int64_t> scores;
  for (const Seen& s : seen) {
    if (!s.fits) continue;
    fit.push_back({s.node, NodeScore(options_.placement, s.reserved + share, s.total, largest)});
    scores.push_back(fit.back().score);
  }
  std::vector<Candidate> ranked;
  for (size_t i : RankScores(scores, options_.placement.randomize, rng_)) {
    ranked.push_back(fit[i]);
  }
  return ranked;
}

absl::StatusOr<Placement> Ledger::PlaceVm(const PlaceVmRequest& request,
                                          const std::string& node_name) {
  const std::string ctx = absl::StrCat("place VM ", request.name);
  RETURN_IF_ERROR(Annotate(CheckPlaceVmRequest(request), ctx));
  const Resources share = NodeShare(request.initial, request.overcommit);
  uint64_t wait = 0;
  Placement placement;
  {
    absl::MutexLock rl(&registry_mu_);
    if (auto it = vm_index_.find(request.name); it != vm_index_.end()) {
      Node* n = it->second;
      absl::MutexLock nl(&n->mu);
      const Vm& vm = n->vms.at(request.name);
      if (vm.bounds != request.bounds || vm.cu != request.compute_unit ||
          vm.overcommit != request.overcommit || vm.migratable != request.migratable ||
          (!node_name.empty() && node_name != n->name)) {
        return absl::AlreadyExistsError(absl::StrCat(
            ctx, ": a VM of that name is already placed on node ", n->name, " with another spec"));
      }
      placement = {n->name, vm.permit};
      wait = vm.last_seq;
    } else {
      std::vector<Candidate> ranked;
      if (!node_name.empty()) {
        auto found = registry_->by_name.find(node_name);
        if (found == registry_->by_name.end()) {
          return absl::NotFoundError(absl::StrCat(ctx, ": node ", node_name, " is not registered"));
        }
        Node* n = found->second;
        absl::MutexLock nl(&n->mu);
        if (n->Awaiting(clock_.Now())) {
          return absl::UnavailableError(absl::StrCat(
              ctx, ": node ", node_name, " has not heard from its agent since the restart"));
        }
        ranked.push_back({n, 0});
      } else {
        ranked = RankNodes(share, nullptr);
      }
      bool placed = false;
      for (const Candidate& c : ranked) {
        Node* n = c.node;
        absl::MutexLock nl(&n->mu);
        if (!n->Fits(share, clock_.Now())) continue;  // it changed since it was ranked
        const change::VmPlaced change{
            .name = request.name,
            .node = n->name,
            .vm = {.bounds = request.bounds,
                   .cu = request.compute_unit,
                   .permit = request.initial,
                   .requested = request.initial,
                   .overcommit = request.overcommit,
                   .migratable = request.migratable,
                   // Microseconds, as the log keeps it.
                   .created = absl::FromUnixMicros(absl::ToUnixMicros(clock_.Now())),
                   .migration = std::nullopt}};
        Vm& vm = Apply(change, *n);
        if (store_ != nullptr) vm.last_seq = Log(internal::ToRecord(change));
        wait = vm.last_seq;
        placement = {n->name, vm.permit};
        placed = true;
        break;
      }
      if (!placed) {
        return absl::ResourceExhaustedError(
            absl::StrCat(ctx, ": no node ", node_name.empty() ? "" : node_name + " ",
                         "has room for ", share.ToString(), " (after overcommit)"));
      }
    }
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return placement;
}

absl::Status Ledger::ReleaseVm(const std::string& vm_name) {
  uint64_t seq = 0;
  {
    absl::MutexLock rl(&registry_mu_);
    auto it = vm_index_.find(vm_name);
    if (it == vm_index_.end()) {
      return absl::NotFoundError(absl::StrCat("release VM ", vm_name, ": no such VM"));
    }
    Node* src = it->second;
    Node* dst = nullptr;
    {
      absl::MutexLock l(&src->mu);
      const Vm& vm = src->vms.at(vm_name);
      if (vm.migration) dst = registry_->by_name.at(vm.migration->target_node);
    }
    TwoLocks locks(src, dst);
    const change::VmReleased change{.vm = vm_name};
    Apply(change, *src, dst);
    if (store_ != nullptr) seq = Log(internal::ToRecord(change));
  }
  return WaitDurable(seq);
}

// --- migrations ---

absl::StatusOr<std::vector<MigrationOrder>> Ledger::MigrationOrders(const std::string& name) {
  Node* node = FindNode(name);
  if (node == nullptr) {
    return absl::NotFoundError(absl::StrCat("migration orders: node ", name, " is not registered"));
  }
  bool above;
  {
    absl::MutexLock l(&node->mu);
    above = node->AboveWatermark();
  }
  if (above) RETURN_IF_ERROR(BalanceNode(node));
  std::vector<MigrationOrder> orders;
  uint64_t wait = 0;
  {
    absl::MutexLock l(&node->mu);
    for (const auto& [vm_name, vm] : node->vms) {
      if (!vm.migration) continue;
      orders.push_back(*vm.migration);
      wait = std::max(wait, vm.last_seq);
    }
  }
  std::sort(orders.begin(), orders.end(),
            [](const MigrationOrder& a, const MigrationOrder& b) { return a.id < b.id; });
  RETURN_IF_ERROR(WaitDurable(wait));
  return orders;
}

absl::Status Ledger::BalanceNode(Node* node) {
  uint64_t wait = 0;
  {
    absl::MutexLock rl(&registry_mu_);
    Resources excess, watermark;
    std::vector<MigrationCandidate> candidates;
    {
      absl::MutexLock l(&node->mu);
      watermark = node->Watermark();
      excess = Resources::SaturatingSub(node->reserved - node->migrating, watermark);
      if (excess.IsZero()) return absl::OkStatus();
      for (const auto& [vm_name, vm] : node->vms) {
        if (!vm.migratable || vm.migration) continue;
        const Resources share = vm.share();
        // Too big to fit under the watermark on its own: moving it would not help.
        if (share.AnyGreaterThan(watermark)) continue;
        candidates.push_back({vm_name, vm.permit, share, vm.created});
      }
    }
    std::sort(candidates.begin(), candidates.end(),
              [](const MigrationCandidate& a, const MigrationCandidate& b) { return a.vm < b.vm; });
    for (size_t i : policy_->Choose(candidates, excess)) {
      const MigrationCandidate& c = candidates[i];
      bool started = false;
      for (const Candidate& target : RankNodes(c.share, node)) {
        Node* dst = target.node;
        TwoLocks locks(node, dst);
        auto it = node->vms.find(c.vm);
        if (it == node->vms.end() || it->second.migration) break;
        if (!dst->TakesMigration(it->second.share(), clock_.Now())) continue;  // changed since
        const change::MigrationStarted change{{.id = next_migration_id_,
                                               .vm = c.vm,
                                               .source_node = node->name,
                                               .target_node = dst->name,
                                               .target_agent_address = dst->agent_address}};
        Vm& vm = Apply(change, *node, *dst);
        if (store_ != nullptr) {
          vm.last_seq = Log(internal::ToRecord(change));
          wait = std::max(wait, vm.last_seq);
        }
        LOG(INFO) << "node " << node->name << " is above its watermark " << watermark.ToString()
                  << ": migrating VM " << c.vm << " (" << vm.permit.ToString() << ") to node "
                  << dst->name << " (order " << change.order.id << ", policy " << policy_->name()
                  << ")";
        started = true;
        break;
      }
      if (!started) {
        LOG_EVERY_N(WARNING, 100) << "node " << node->name << " is above its watermark, but no "
                                  << "other node has room under its watermark for VM " << c.vm
                                  << " (" << c.share.ToString() << ")";
      }
    }
  }
  return WaitDurable(wait);
}

absl::Status Ledger::EndMigration(uint64_t order_id, const std::string& vm_name, bool succeeded) {
  const std::string ctx = absl::StrCat("end migration ", order_id, " of VM ", vm_name);
  uint64_t seq = 0;
  {
    absl::MutexLock rl(&registry_mu_);
    auto it = vm_index_.find(vm_name);
    if (it == vm_index_.end()) return absl::NotFoundError(absl::StrCat(ctx, ": no such VM"));
    Node* src = it->second;
    Node* dst = nullptr;
    {
      absl::MutexLock l(&src->mu);
      const Vm& vm = src->vms.at(vm_name);
      if (!vm.migration || vm.migration->id != order_id) {
        return absl::FailedPreconditionError(
            absl::StrCat(ctx, ": ",
                         vm.migration ? absl::StrCat("its migration is ", vm.migration->id)
                                      : std::string("it is not migrating")));
      }
      dst = registry_->by_name.at(vm.migration->target_node);
    }
    TwoLocks locks(src, dst);
    const change::MigrationEnded change{.id = order_id, .vm = vm_name, .succeeded = succeeded};
    Vm& vm = Apply(change, *src, *dst);
    // Whichever agent holds the VM now has just been heard from (volatile, see Vm::heard).
    if (succeeded) {
      dst->MarkHeard(vm);
    } else {
      src->MarkHeard(vm);
    }
    if (store_ != nullptr) vm.last_seq = seq = Log(internal::ToRecord(change));
    LOG(INFO) << ctx << ": " << (succeeded ? "succeeded, now on node " : "failed, stays on node ")
              << (succeeded ? dst : src)->name;
  }
  return WaitDurable(seq);
}

// --- reads ---

namespace {

VmInfo InfoOf(const std::string& name, const std::string& node, const auto& vm) {
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

}  // namespace

std::vector<NodeInfo> Ledger::ListNodes(const std::string& filter) const {
  std::shared_ptr<const Registry> registry;
  {
    absl::ReaderMutexLock rl(&registry_mu_);
    registry = registry_;
  }
  const absl::Time now = clock_.Now();
  std::vector<NodeInfo> out;
  for (Node* n : registry->sorted) {
    if (!filter.empty() && n->name != filter) continue;
    absl::MutexLock l(&n->mu);
    out.push_back(n->Info(now));
  }
  return out;
}

std::vector<VmInfo> Ledger::ListVms(const std::string& filter) const {
  std::shared_ptr<const Registry> registry;
  {
    absl::ReaderMutexLock rl(&registry_mu_);
    registry = registry_;
  }
  std::vector<VmInfo> out;
  for (Node* n : registry->sorted) {
    if (!filter.empty() && n->name != filter) continue;
    absl::MutexLock l(&n->mu);
    const size_t first = out.size();
    for (const auto& [name, vm] : n->vms) out.push_back(InfoOf(name, n->name, vm));
    std::sort(out.begin() + first, out.end(),
              [](const VmInfo& a, const VmInfo& b) { return a.name < b.name; });
  }
  return out;
}

absl::StatusOr<VmInfo> Ledger::GetVm(const std::string& name) const {
  absl::ReaderMutexLock rl(&registry_mu_);
  auto it = vm_index_.find(name);
  if (it == vm_index_.end()) return absl::NotFoundError(absl::StrCat("no VM ", name));
  absl::MutexLock l(&it->second->mu);
  return InfoOf(name, it->second->name, it->second->vms.at(name));
}

absl::StatusOr<NodeInfo> Ledger::GetNode(const std::string& name) const {
  Node* n = FindNode(name);
  if (n == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " is not registered"));
  absl::MutexLock l(&n->mu);
  return n->Info(clock_.Now());
}

}  // namespace autoscale::ledger
