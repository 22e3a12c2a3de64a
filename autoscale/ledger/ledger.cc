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

// The ledger's operations: requests, placement, release, migrations, reads. Node registration
// and lifecycle are in nodes.cc, recovery and snapshots in recovery.cc, the invariant check in
// invariants.cc.

namespace autoscale::ledger {

using internal::CheckAmount;
using internal::CheckPlaceVmRequest;
using internal::CheckSize;
using internal::Grant;
using internal::InfoOf;
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
      opened_(clock_.Now()),
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

absl::Status Ledger::Writable(bool growth, std::string_view what) const {
  if (store_ == nullptr) return absl::OkStatus();
  const absl::Status s = store_->Writable(growth);
  if (s.ok()) return s;
  return absl::UnavailableError(
      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", s.message()));
}

absl::Status Ledger::CheckRecord(const LedgerRecord& record, std::string_view what) const {
  const size_t size = record.ByteSizeLong();
  if (size <= options_.max_record_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      absl::string_view(what.data(), what.size()), ": its log record would have ", size,
      " bytes, more than the ", options_.max_record_bytes, " a record may have"));
}

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

// --- requests ---

Ledger::Node* Ledger::RequestNode(const PermitRequest& r, const VmHandle* handle) const {
  // A handle's node is the one of that name while no node was added or removed since.
  if (handle != nullptr && handle->ledger_ == id_ && handle->node_ != nullptr &&
      handle->registry_version_ == registry_version_.load(std::memory_order_acquire) &&
      handle->node_->name == r.node) {
    return handle->node_;
  }
  return FindNode(r.node);
}

absl::StatusOr<Permit> Ledger::AnswerRequest(const PermitRequest& r, uint64_t* wait_seq,
                                             VmHandle* handle) {
  const uint64_t version = registry_version_.load(std::memory_order_acquire);
  Node* node = RequestNode(r, handle);
  if (node == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("request for VM ", r.vm, ": node ", r.node, " is not registered"));
  }
  absl::MutexLock l(&node->mu);
  if (node->removed) {
    return absl::NotFoundError(
        absl::StrCat("request for VM ", r.vm, ": node ", r.node, " was removed"));
  }
  // The VM's entry: the handle's while the node's VMs did not change since (and it is that VM),
  // else found by name (and the handle pointed there).
  std::pair<const std::string, Vm>* entry = nullptr;
  if (handle != nullptr && handle->node_ == node && handle->layout_ == node->layout &&
      handle->entry_ != nullptr && handle->entry_->first == r.vm) {
    entry = handle->entry_;
  } else {
    auto it = node->vms.find(r.vm);
    if (it == node->vms.end()) {
      return absl::NotFoundError(
          absl::StrCat("request for VM ", r.vm, ": no VM of that name on node ", r.node));
    }
    entry = &*it;
    if (handle != nullptr) {
      // The version read before the node was found: if a node was added or removed meanwhile,
      // the handle is refreshed on its next use.
      *handle = VmHandle();
      handle->ledger_ = id_;
      handle->registry_version_ = version;
      handle->node_ = node;
      handle->entry_ = entry;
      handle->layout_ = node->layout;
    }
  }
  Vm& vm = entry->second;
  if (r.compute_unit != vm.cu) {
    return absl::InvalidArgumentError(absl::StrCat("request for VM ", r.vm, ": compute unit ",
                                                   r.compute_unit.ToString(), " is not the VM's ",
                                                   vm.cu.ToString()));
  }
  if (absl::Status s = CheckSize(r.resources, vm.cu, vm.bounds, "resources"); !s.ok()) {
    return Annotate(s, absl::StrCat("request for VM ", r.vm));
  }
  if (r.last_permit) {
    if (absl::Status s = internal::CheckWholeUnits(*r.last_permit, vm.cu, "last permit"); !s.ok()) {
      return Annotate(s, absl::StrCat("request for VM ", r.vm));
    }
  }

  // What the VM holds before this request is granted.
  const Resources held = vm.permit;
  Resources have = held;
  // The first word from this VM's agent since a restart, with a permit above what the log holds:
  // the log lost it, and the VM may be using it, so the ledger takes it back, as far as the node
  // has room (as a grant would have been). A migrating VM's reservation is on two nodes and
  // fixed until the migration ends (the log holds no resize of a migrating VM).
  const bool adopt =
      !vm.heard && r.last_permit && r.last_permit->AnyGreaterThan(vm.permit) && !vm.migration;
  if (adopt) {
    const Resources others = node->reserved - vm.share();
    const Resources& last = *r.last_permit;
    if (last.milli_cpu > have.milli_cpu) {
      have.milli_cpu = Grant(vm.permit.milli_cpu, last.milli_cpu, vm.cu.milli_cpu,
                             node->total.milli_cpu, others.milli_cpu, vm.overcommit.cpu_milli);
    }
    if (last.memory_bytes > have.memory_bytes) {
      have.memory_bytes =
          Grant(vm.permit.memory_bytes, last.memory_bytes, vm.cu.memory_bytes,
                node->total.memory_bytes, others.memory_bytes, vm.overcommit.memory_milli);
    }
  }
  change::VmResized change{.node = r.node, .vm = r.vm, .permit = have, .requested = vm.requested};
  // A migrating VM is not resized (it has a reservation on two nodes).
  const bool growth = !vm.migration && r.resources.AnyGreaterThan(have);
  if (!vm.migration) {
    const Resources& want = r.resources;
    change.requested = want;
    change.permit = want;  // a decrease (or no change) as asked
    if (growth) {
      // An increase: none while the node waits for its other agents after a restart (this one
      // counts as heard: it is speaking; the clock only read then), else what the node has room
      // for beside its other VMs.
      const int64_t others_unheard = node->unheard - (vm.heard ? 0 : 1);
      const bool frozen = others_unheard > 0 && clock_.Now() < node->awaiting_until;
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
    const std::string what = absl::StrCat("request for VM ", r.vm, " on node ", r.node);
    // Growth waits for a store that can take it; a decrease (or an adoption) is recorded
    // whenever the store can write at all.
    RETURN_IF_ERROR(Writable(growth, what));
    LedgerRecord record;
    if (store_ != nullptr) {
      record = internal::ToRecord(change);
      RETURN_IF_ERROR(CheckRecord(record, what));
    }
    Apply(change, *node, vm);
    if (store_ != nullptr) vm.last_seq = Log(record);
  }
  if (!vm.heard && r.last_permit && r.last_permit->AnyGreaterThan(held)) {
    const Resources wanted = Resources::Max(held, *r.last_permit);
    LOG(WARNING) << "VM " << r.vm << " on node " << r.node << ": the agent's last permit "
                 << r.last_permit->ToString() << " is above the ledger's " << held.ToString()
                 << (vm.migration ? ", but the VM is migrating: not adopted"
                     : have == held
                         ? ", but the node has no room: not adopted"
                         : absl::StrCat("; adopted ", have.ToString(),
                                        have == wanted ? "" : " (as far as the node has room)"));
    if (have != held) adopted_permits_.fetch_add(1, std::memory_order_relaxed);
    if (adopt && have != wanted) clipped_adoptions_.fetch_add(1, std::memory_order_relaxed);
  }
  // Heard only once the answer stands (a refused one leaves the adoption for the next).
  node->MarkHeard(vm);
  *wait_seq = vm.last_seq;
  // A migrating VM keeps its reservation, but is answered no more than it asked for: an agent
  // refuses a permit above its request (core::State), and with it the migration order the answer
  // carries. What it is told is within what stays reserved, so nothing is overcommitted.
  const Resources answer = vm.migration ? Resources::Min(vm.permit, r.resources) : vm.permit;
  return Permit{.resources = answer, .migration = vm.migration};
}

absl::StatusOr<Permit> Ledger::Request(const PermitRequest& request) {
  uint64_t seq = 0;
  ASSIGN_OR_RETURN(Permit permit, AnswerRequest(request, &seq));
  RETURN_IF_ERROR(WaitDurable(seq));
  return permit;
}

void VmHandle::Prefetch() const {
  // A prefetch never faults, so a stale pointer (its table since rehashed) does no harm.
  const char* p = reinterpret_cast<const char*>(entry_);
  if (p == nullptr) return;
  for (size_t off = 0; off < sizeof(*entry_); off += 64) __builtin_prefetch(p + off);
}

absl::StatusOr<Permit> Ledger::Request(const PermitRequest& request, VmHandle& handle) {
  uint64_t seq = 0;
  ASSIGN_OR_RETURN(Permit permit, AnswerRequest(request, &seq, &handle));
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

std::vector<Ledger::Candidate> Ledger::RankNodes(const Resources& share, const Node* migrating_from,
                                                 bool any_room) {
  const absl::Time now = clock_.Now();
  struct Seen {
    Node* node;
    Resources reserved, total;
    bool fits, takes;
  };
  std::vector<Seen> seen;
  Resources largest;
  for (Node* n : registry_->sorted) {
    if (n == migrating_from) continue;
    absl::MutexLock l(&n->mu);
    const bool fits = n->Fits(share, now);
    const bool takes = migrating_from != nullptr ? n->TakesMigration(share, now) : fits;
    seen.push_back({n, n->reserved, n->total, fits, takes});
    largest = Resources::Max(largest, n->total);
  }
  std::vector<Candidate> ranked;
  // The nodes that take it, best first; then (any_room) those it merely fits on.
  for (bool second : {false, true}) {
    if (second && !any_room) break;
    std::vector<Candidate> fit;
    std::vector<int64_t> scores;
    for (const Seen& s : seen) {
      if (second ? (s.takes || !s.fits) : !s.takes) continue;
      fit.push_back({s.node, NodeScore(options_.placement, s.reserved + share, s.total, largest)});
      scores.push_back(fit.back().score);
    }
    for (size_t i : RankScores(scores, options_.placement.randomize, rng_)) {
      ranked.push_back(fit[i]);
    }
  }
  return ranked;
}

absl::StatusOr<Placement> Ledger::PlaceVm(const PlaceVmRequest& request,
                                          const std::string& node_name) {
  const std::string ctx = absl::StrCat("place VM ", request.name);
  RETURN_IF_ERROR(Annotate(CheckPlaceVmRequest(request), ctx));
  RETURN_IF_ERROR(Annotate(internal::CheckName(node_name, "node", /*may_be_empty=*/true), ctx));
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
      RETURN_IF_ERROR(Writable(/*growth=*/true, ctx));
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
        if (n->cordoned) {
          return absl::FailedPreconditionError(
              absl::StrCat(ctx, ": node ", node_name, " is cordoned"));
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
        LedgerRecord record;
        if (store_ != nullptr) {
          record = internal::ToRecord(change);
          RETURN_IF_ERROR(CheckRecord(record, ctx));
        }
        Vm& vm = Apply(change, *n);
        if (store_ != nullptr) vm.last_seq = Log(record);
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
    const std::string ctx = absl::StrCat("release VM ", vm_name);
    RETURN_IF_ERROR(Writable(/*growth=*/false, ctx));
    Node* src = it->second;
    Node* dst = nullptr;
    {
      absl::MutexLock l(&src->mu);
      const Vm& vm = src->vms.at(vm_name);
      if (vm.migration) dst = registry_->by_name.at(vm.migration->target_node);
    }
    TwoLocks locks(src, dst);
    const change::VmReleased change{.vm = vm_name};
    LedgerRecord record;
    if (store_ != nullptr) {
      record = internal::ToRecord(change);
      RETURN_IF_ERROR(CheckRecord(record, ctx));
    }
    Apply(change, *src, dst);
    if (store_ != nullptr) seq = Log(record);
  }
  return WaitDurable(seq);
}

// --- migrations ---

absl::StatusOr<std::vector<MigrationOrder>> Ledger::MigrationOrders(const std::string& name) {
  Node* node = FindNode(name);
  if (node == nullptr) {
    return absl::NotFoundError(absl::StrCat("migration orders: node ", name, " is not registered"));
  }
  bool draining, above;
  {
    absl::MutexLock l(&node->mu);
    draining = node->draining;
    above = node->AboveWatermark();
  }
  if (draining) {
    uint64_t wait = 0;
    {
      absl::MutexLock rl(&registry_mu_);
      bool removed;
      {
        absl::MutexLock l(&node->mu);  // removal holds the registry and the node's lock
        removed = node->removed;
      }
      if (!removed) RETURN_IF_ERROR(DrainStep(node, &wait).status());
    }
    RETURN_IF_ERROR(WaitDurable(wait));
  } else if (above) {
    RETURN_IF_ERROR(BalanceNode(node));
  }
  std::vector<MigrationOrder> orders;
  uint64_t wait = 0;
  {
    absl::MutexLock l(&node->mu);
    if (node->removed) {
      return absl::NotFoundError(absl::StrCat("migration orders: node ", name, " was removed"));
    }
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

bool Ledger::StartMigration(Node* node, const std::string& vm_name, bool any_room,
                            std::string_view why, uint64_t* wait_seq) {
  Resources share;
  {
    absl::MutexLock l(&node->mu);
    share = node->vms.at(vm_name).share();
  }
  for (const Candidate& target : RankNodes(share, node, any_room)) {
    Node* dst = target.node;
    TwoLocks locks(node, dst);
    auto it = node->vms.find(vm_name);
    if (it == node->vms.end() || it->second.migration) return false;
    const absl::Time now = clock_.Now();
    // Changed since it was ranked?
    if (!(any_room ? dst->Fits(it->second.share(), now)
                   : dst->TakesMigration(it->second.share(), now))) {
      continue;
    }
    const change::MigrationStarted change{
        {.id = next_migration_id_,
         .vm = vm_name,
         .source_node = node->name,
         .target_node = dst->name,
         .target_agent_address = dst->agent_address,
         // Microseconds, as the log keeps it.
         .started = absl::FromUnixMicros(absl::ToUnixMicros(now))}};
    LedgerRecord record;
    if (store_ != nullptr) {
      record = internal::ToRecord(change);
      if (!CheckRecord(record, "migration").ok()) return false;  // cannot be: names are bounded
    }
    Vm& vm = Apply(change, *node, *dst);
    if (store_ != nullptr) vm.last_seq = Log(record);
    LOG(INFO) << "node " << node->name << " " << why << ": migrating VM " << vm_name << " ("
              << vm.permit.ToString() << ") to node " << dst->name << " (order " << change.order.id
              << ")";
    *wait_seq = std::max(*wait_seq, vm.last_seq);
    return true;
  }
  LOG_EVERY_N(WARNING, 100) << "node " << node->name << " " << why
                            << ", but no other node has room for VM " << vm_name << " ("
                            << share.ToString() << ")";
  return false;
}

absl::Status Ledger::BalanceNode(Node* node) {
  uint64_t wait = 0;
  {
    absl::MutexLock rl(&registry_mu_);
    Resources excess, watermark;
    std::vector<MigrationCandidate> candidates;
    {
      absl::MutexLock l(&node->mu);
      if (node->removed) return absl::OkStatus();
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
    if (candidates.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(Writable(/*growth=*/true, absl::StrCat("balancing node ", node->name)));
    std::sort(candidates.begin(), candidates.end(),
              [](const MigrationCandidate& a, const MigrationCandidate& b) { return a.vm < b.vm; });
    const std::string why = absl::StrCat("is above its watermark ", watermark.ToString(),
                                         " (policy ", std::string(policy_->name()), ")");
    for (size_t i : policy_->Choose(candidates, excess)) {
      StartMigration(node, candidates[i].vm, /*any_room=*/false, why, &wait);
    }
  }
  return WaitDurable(wait);
}

absl::Status Ledger::EndMigration(uint64_t order_id, const std::string& vm_name, bool succeeded) {
  const std::string ctx = absl::StrCat("end migration ", order_id, " of VM ", vm_name);
  uint64_t seq = 0;
  {
    absl::MutexLock rl(&registry_mu_);
    RETURN_IF_ERROR(Writable(/*growth=*/false, ctx));
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
    LedgerRecord record;
    if (store_ != nullptr) {
      record = internal::ToRecord(change);
      RETURN_IF_ERROR(CheckRecord(record, ctx));
    }
    Vm& vm = Apply(change, *src, *dst);
    // Whichever agent holds the VM now has just been heard from (volatile, see Vm::heard).
    if (succeeded) {
      dst->MarkHeard(vm);
    } else {
      src->MarkHeard(vm);
    }
    if (store_ != nullptr) vm.last_seq = seq = Log(record);
    LOG(INFO) << ctx << ": " << (succeeded ? "succeeded, now on node " : "failed, stays on node ")
              << (succeeded ? dst : src)->name;
  }
  return WaitDurable(seq);
}

absl::StatusOr<std::vector<MigrationOrder>> Ledger::ExpireMigrations(absl::Time issued_before) {
  std::vector<MigrationOrder> ended;
  for (const VmInfo& vm : ListVms()) {
    if (!vm.migration) continue;
    const MigrationOrder& o = *vm.migration;
    const absl::Time issued = o.started == absl::InfinitePast() ? opened_ : o.started;
    if (issued >= issued_before) continue;
    const absl::Status s = EndMigration(o.id, o.vm, /*succeeded=*/false);
    if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s)) continue;  // ended meanwhile
    RETURN_IF_ERROR(s);
    LOG(WARNING) << "migration order " << o.id << " of VM " << o.vm << " from node "
                 << o.source_node << " to node " << o.target_node << ", issued "
                 << absl::FormatTime(issued) << ", was not reported in time: ended as failed";
    expired_migrations_.fetch_add(1, std::memory_order_relaxed);
    ended.push_back(o);
  }
  return ended;
}

// --- reads ---

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
  if (n->removed) return absl::NotFoundError(absl::StrCat("node ", name, " was removed"));
  return n->Info(clock_.Now());
}

}  // namespace autoscale::ledger
