#include "autoscale/ledger/ledger.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "glog/logging.h"

namespace autoscale::ledger {
namespace {

std::atomic<uint64_t> next_ledger_id{1};

int64_t ShareOf(int64_t amount, uint32_t factor_milli) {
  // amount <= kMaxAmount (2^50), so amount * 1000 fits.
  return (amount * 1000 + factor_milli - 1) / factor_milli;
}

// The most a VM holding `have` may get when it asks for `want` (> have): whole steps of `step`
// as long as its node's reservation stays within `total` (section 3.3 of the reference, with the
// share rounded up so that the node's sum can never pass its total).
int64_t Grant(int64_t have, int64_t want, int64_t step, int64_t total, int64_t node_reserved,
              uint32_t factor_milli) {
  if (want <= have) return want;
  // What the node could reserve for this VM: its free part plus what the VM holds already.
  const int64_t budget = total - node_reserved + ShareOf(have, factor_milli);
  if (budget <= 0) return have;
  // share(x) = ceil(x * 1000 / factor) <= budget  <=>  x <= floor(budget * factor / 1000).
  const __int128 room = static_cast<__int128>(budget) * factor_milli / 1000;
  if (room <= have) return have;
  const __int128 steps = (room - have) / step;
  return have + static_cast<int64_t>(std::min<__int128>(steps * step, want - have));
}

absl::Status CheckAmount(const Resources& r, absl::string_view what) {
  if (r.milli_cpu < 0 || r.memory_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", r.ToString(), " is negative"));
  }
  if (r.milli_cpu > kMaxAmount || r.memory_bytes > kMaxAmount) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", r.ToString(), " is larger than the ledger accepts (2^50)"));
  }
  return absl::OkStatus();
}

absl::Status CheckComputeUnit(const Resources& cu) {
  RETURN_IF_ERROR(CheckAmount(cu, "compute unit"));
  if (cu.milli_cpu == 0 || cu.memory_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute unit ", cu.ToString(), ": both resources must be > 0"));
  }
  return absl::OkStatus();
}

absl::Status CheckBounds(const Bounds& b, const Resources& cu) {
  if (b.min_cu < 1 || b.min_cu > b.max_cu) {
    return absl::InvalidArgumentError(
        absl::StrCat("bounds ", b.min_cu, "..", b.max_cu, " CU: need 1 <= min <= max"));
  }
  if (cu.milli_cpu > kMaxAmount / b.max_cu || cu.memory_bytes > kMaxAmount / b.max_cu) {
    return absl::InvalidArgumentError(
        absl::StrCat("bounds ", b.min_cu, "..", b.max_cu, " CU of ", cu.ToString(),
                     ": the largest size is larger than the ledger accepts (2^50)"));
  }
  return absl::OkStatus();
}

// A VM's size: whole compute units within its bounds, per resource.
absl::Status CheckSize(const Resources& r, const Resources& cu, const Bounds& b,
                       absl::string_view what) {
  RETURN_IF_ERROR(CheckAmount(r, what));
  if (r.milli_cpu % cu.milli_cpu != 0 || r.memory_bytes % cu.memory_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", r.ToString(), " is not a whole number of compute units of ", cu.ToString()));
  }
  if (r.AnyLessThan(cu * b.min_cu)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", r.ToString(),
                                                   " is below the VM's bounds (min ", b.min_cu,
                                                   " CU = ", (cu * b.min_cu).ToString(), ")"));
  }
  if (r.AnyGreaterThan(cu * b.max_cu)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", r.ToString(),
                                                   " is above the VM's bounds (max ", b.max_cu,
                                                   " CU = ", (cu * b.max_cu).ToString(), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckOvercommit(const Overcommit& o) {
  for (uint32_t f : {o.cpu_milli, o.memory_milli}) {
    if (f < 1000 || f > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("overcommit factor ", f, "/1000 is outside [1000, 100000]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckVmSpec(const VmSpec& s) {
  if (s.name.empty()) return absl::InvalidArgumentError("VM name is empty");
  RETURN_IF_ERROR(CheckComputeUnit(s.compute_unit));
  RETURN_IF_ERROR(CheckBounds(s.bounds, s.compute_unit));
  RETURN_IF_ERROR(CheckOvercommit(s.overcommit));
  return CheckSize(s.initial, s.compute_unit, s.bounds, "initial size");
}

// Locks two nodes (or one, when they are the same or the second is null) in name order.
template <typename N>
class ABSL_SCOPED_LOCKABLE TwoLocks {
 public:
  TwoLocks(N* a, N* b) ABSL_EXCLUSIVE_LOCK_FUNCTION(a->mu, b->mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
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
  N* first_ = nullptr;
  N* second_ = nullptr;
};

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("ledger store: ", what));
}

}  // namespace

Resources NodeShare(const Resources& amount, const Overcommit& o) {
  return {ShareOf(amount.milli_cpu, o.cpu_milli), ShareOf(amount.memory_bytes, o.memory_milli)};
}

struct Ledger::Vm {
  Bounds bounds;
  Resources cu;
  Resources reserved;
  Resources requested;
  Overcommit overcommit;
  bool migratable = false;
  absl::Time created;
  std::optional<MigrationOrder> migration;
  // False after a restart until the VM's agent has been heard from.
  bool heard = true;
  // Sequence number of the VM's latest record: answers about it wait until it is durable.
  uint64_t last_seq = 0;

  Resources share() const { return NodeShare(reserved, overcommit); }
};

// A VM migrating to a node: reserved there until the migration ends.
struct Incoming {
  uint64_t order_id = 0;
  Resources amount;
  Resources share;
};

struct Ledger::Node {
  explicit Node(std::string n) : name(std::move(n)) {}

  const std::string name;
  // Guards everything below: the node's totals and sums, and its VMs.
  mutable absl::Mutex mu;
  Resources total ABSL_GUARDED_BY(mu);
  double watermark_fraction ABSL_GUARDED_BY(mu) = 0;
  std::string agent_address ABSL_GUARDED_BY(mu);
  Resources reserved ABSL_GUARDED_BY(mu);
  Resources committed ABSL_GUARDED_BY(mu);
  Resources migrating ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Vm> vms ABSL_GUARDED_BY(mu);
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
    return !Awaiting(now) && (reserved + share).FitsIn(total);
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
    committed = committed + vm.reserved;
    if (vm.migration) migrating = migrating + s;
  }
  void Uncount(const Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Resources s = vm.share();
    reserved = reserved - s;
    committed = committed - vm.reserved;
    if (vm.migration) migrating = migrating - s;
  }
  void Add(const std::string& vm_name, Vm vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Count(vm);
    vms.emplace(vm_name, std::move(vm));
  }
  void Forget(const std::string& vm_name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = vms.find(vm_name);
    Uncount(it->second);
    if (!it->second.heard) --unheard;
    vms.erase(it);
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
            .vm_count = vms.size()};
  }
  NodeRecord Record() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    NodeRecord r;
    r.set_name(name);
    *r.mutable_total() = core::ToProto(total);
    r.set_watermark(watermark_fraction);
    r.set_agent_address(agent_address);
    return r;
  }
};

// The node lookup table. Immutable once published; a new one replaces it when a node is added.
struct Ledger::Registry {
  absl::flat_hash_map<std::string, Node*> by_name;
  // Sorted by name: the order in which several nodes are locked.
  std::vector<Node*> sorted;
};

struct Ledger::Candidate {
  Node* node;
  int64_t score;
};

namespace {

MigrationRecord MigrationRecordOf(const MigrationOrder& o) {
  MigrationRecord r;
  r.set_id(o.id);
  r.set_vm(o.vm);
  r.set_source_node(o.source_node);
  r.set_target_node(o.target_node);
  r.set_target_agent_address(o.target_agent_address);
  return r;
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(LedgerOptions options,
                                                     std::unique_ptr<LedgerStore> store) {
  if (store == nullptr) return absl::InvalidArgumentError("Ledger::Open: no store");
  ASSIGN_OR_RETURN(StoredState state, store->Recover());
  std::unique_ptr<Ledger> ledger(new Ledger(std::move(options), std::move(store)));
  RETURN_IF_ERROR(ledger->Restore(state));
  return ledger;
}

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

Ledger::Node* Ledger::AddNode(const std::string& name) {
  nodes_.push_back(std::make_unique<Node>(name));
  Node* node = nodes_.back().get();
  auto next = std::make_shared<Registry>(*registry_);
  next->by_name[name] = node;
  next->sorted.insert(std::upper_bound(next->sorted.begin(), next->sorted.end(), node,
                                       [](Node* a, Node* b) { return a->name < b->name; }),
                      node);
  registry_ = std::move(next);
  registry_version_.fetch_add(1, std::memory_order_release);
  return node;
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
  const double watermark = spec.watermark == 0 ? options_.default_watermark : spec.watermark;
  uint64_t wait = 0;
  NodeInfo info;
  {
    absl::MutexLock rl(&registry_mu_);
    auto found = registry_->by_name.find(spec.name);
    const bool created = found == registry_->by_name.end();
    Node* node = created ? AddNode(spec.name) : found->second;
    absl::MutexLock nl(&node->mu);
    if (node->reserved.AnyGreaterThan(spec.total)) {
      return absl::FailedPreconditionError(
          absl::StrCat(ctx, ": the node has ", node->reserved.ToString(),
                       " reserved, more than the new total ", spec.total.ToString()));
    }
    const bool changed = created || node->total != spec.total ||
                         node->watermark_fraction != watermark ||
                         node->agent_address != spec.agent_address;
    node->total = spec.total;
    node->watermark_fraction = watermark;
    node->agent_address = spec.agent_address;
    if (changed && store_ != nullptr) {
      LedgerRecord r;
      *r.mutable_node_registered() = node->Record();
      node->last_seq = Log(r);
    }
    wait = node->last_seq;
    info = node->Info(clock_.Now());
  }
  RETURN_IF_ERROR(WaitDurable(wait));
  return info;
}

// --- requests ---

absl::StatusOr<Permit> Ledger::ApplyRequest(const ResizeRequest& r, uint64_t* wait_seq) {
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

  bool changed = false;
  if (!vm.heard) {
    // The first word from this VM's agent since a restart. A permit above what the log holds
    // means the log lost it: the VM may be using it, so the ledger takes it back.
    vm.heard = true;
    --node->unheard;
    if (r.last_permit && r.last_permit->AnyGreaterThan(vm.reserved) && vm.migration) {
      // Its reservation is on two nodes and fixed until the migration ends; the log holds no
      // resize of a migrating VM.
      LOG(WARNING) << "VM " << r.vm << " on node " << r.node << ": the agent's last permit "
                   << r.last_permit->ToString() << " is above the ledger's "
                   << vm.reserved.ToString() << ", but the VM is migrating: not adopted";
    } else if (r.last_permit && r.last_permit->AnyGreaterThan(vm.reserved)) {
      LOG(WARNING) << "VM " << r.vm << " on node " << r.node << ": the agent's last permit "
                   << r.last_permit->ToString() << " is above the ledger's "
                   << vm.reserved.ToString() << "; adopting it";
      node->Uncount(vm);
      vm.reserved = Resources::Max(vm.reserved, *r.last_permit);
      node->Count(vm);
      adopted_permits_.fetch_add(1, std::memory_order_relaxed);
      changed = true;
    }
  }
  // A migrating VM is not resized (it has a reservation on two nodes).
  if (!vm.migration) {
    const bool frozen = node->unheard > 0 && node->Awaiting(clock_.Now());
    const Resources have = vm.reserved;
    const Resources& want = r.resources;
    Resources next;
    next.milli_cpu =
        frozen && want.milli_cpu > have.milli_cpu
            ? have.milli_cpu
            : Grant(have.milli_cpu, want.milli_cpu, vm.cu.milli_cpu, node->total.milli_cpu,
                    node->reserved.milli_cpu, vm.overcommit.cpu_milli);
    next.memory_bytes = frozen && want.memory_bytes > have.memory_bytes
                            ? have.memory_bytes
                            : Grant(have.memory_bytes, want.memory_bytes, vm.cu.memory_bytes,
                                    node->total.memory_bytes, node->reserved.memory_bytes,
                                    vm.overcommit.memory_milli);
    if (next != have) {
      node->Uncount(vm);
      vm.reserved = next;
      node->Count(vm);
      changed = true;
    }
    if (vm.requested != want) {
      vm.requested = want;
      changed = true;
    }
  }
  if (changed && store_ != nullptr) {
    LedgerRecord rec;
    VmResized* x = rec.mutable_vm_resized();
    x->set_node(r.node);
    x->set_vm(r.vm);
    *x->mutable_reserved() = core::ToProto(vm.reserved);
    *x->mutable_requested() = core::ToProto(vm.requested);
    vm.last_seq = Log(rec);
  }
  *wait_seq = vm.last_seq;
  return Permit{.resources = vm.reserved, .migration = vm.migration};
}

absl::StatusOr<Permit> Ledger::Request(const ResizeRequest& request) {
  uint64_t seq = 0;
  ASSIGN_OR_RETURN(Permit permit, ApplyRequest(request, &seq));
  RETURN_IF_ERROR(WaitDurable(seq));
  return permit;
}

void Ledger::RequestAsync(const ResizeRequest& request,
                          std::function<void(absl::StatusOr<Permit>)> done) {
  uint64_t seq = 0;
  absl::StatusOr<Permit> permit = ApplyRequest(request, &seq);
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

absl::StatusOr<Placement> Ledger::PlaceVm(const VmSpec& spec, const std::string& node_name) {
  const std::string ctx = absl::StrCat("place VM ", spec.name);
  RETURN_IF_ERROR(Annotate(CheckVmSpec(spec), ctx));
  const Resources share = NodeShare(spec.initial, spec.overcommit);
  uint64_t wait = 0;
  Placement placement;
  {
    absl::MutexLock rl(&registry_mu_);
    if (auto it = vm_index_.find(spec.name); it != vm_index_.end()) {
      Node* n = it->second;
      absl::MutexLock nl(&n->mu);
      const Vm& vm = n->vms.at(spec.name);
      if (vm.bounds != spec.bounds || vm.cu != spec.compute_unit ||
          vm.overcommit != spec.overcommit || vm.migratable != spec.migratable ||
          (!node_name.empty() && node_name != n->name)) {
        return absl::AlreadyExistsError(absl::StrCat(
            ctx, ": a VM of that name is already placed on node ", n->name, " with another spec"));
      }
      placement = {n->name, vm.reserved};
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
        Vm vm{.bounds = spec.bounds,
              .cu = spec.compute_unit,
              .reserved = spec.initial,
              .requested = spec.initial,
              .overcommit = spec.overcommit,
              .migratable = spec.migratable,
              // Microseconds, as the log keeps it, so a rebuilt ledger is the same.
              .created = absl::FromUnixMicros(absl::ToUnixMicros(clock_.Now())),
              .migration = std::nullopt,
              .heard = true,
              .last_seq = 0};
        if (store_ != nullptr) {
          LedgerRecord r;
          VmRecord* v = r.mutable_vm_placed();
          v->set_name(spec.name);
          v->set_node(n->name);
          v->mutable_bounds()->set_min_cu(spec.bounds.min_cu);
          v->mutable_bounds()->set_max_cu(spec.bounds.max_cu);
          v->mutable_compute_unit()->set_milli_cpu(spec.compute_unit.milli_cpu);
          v->mutable_compute_unit()->set_memory_bytes(spec.compute_unit.memory_bytes);
          *v->mutable_reserved() = core::ToProto(spec.initial);
          *v->mutable_requested() = core::ToProto(spec.initial);
          v->set_cpu_overcommit_milli(spec.overcommit.cpu_milli);
          v->set_memory_overcommit_milli(spec.overcommit.memory_milli);
          v->set_migratable(spec.migratable);
          v->set_created_unix_micros(absl::ToUnixMicros(vm.created));
          vm.last_seq = Log(r);
        }
        n->Count(vm);
        wait = vm.last_seq;
        n->vms.emplace(spec.name, std::move(vm));
        vm_index_[spec.name] = n;
        placement = {n->name, spec.initial};
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
    TwoLocks<Node> locks(src, dst);
    if (dst != nullptr) {
      const Incoming in = dst->incoming.at(vm_name);
      dst->reserved = dst->reserved - in.share;
      dst->committed = dst->committed - in.amount;
      dst->incoming.erase(vm_name);
    }
    src->Forget(vm_name);
    vm_index_.erase(it);
    if (store_ != nullptr) {
      LedgerRecord r;
      r.set_vm_released(vm_name);
      seq = Log(r);
    }
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
        candidates.push_back({vm_name, vm.reserved, share, vm.created});
      }
    }
    std::sort(candidates.begin(), candidates.end(),
              [](const MigrationCandidate& a, const MigrationCandidate& b) { return a.vm < b.vm; });
    for (size_t i : policy_->Choose(candidates, excess)) {
      const MigrationCandidate& c = candidates[i];
      bool started = false;
      for (const Candidate& target : RankNodes(c.share, node)) {
        Node* dst = target.node;
        TwoLocks<Node> locks(node, dst);
        auto it = node->vms.find(c.vm);
        if (it == node->vms.end() || it->second.migration) break;
        Vm& vm = it->second;
        const Resources share = vm.share();
        if (!dst->TakesMigration(share, clock_.Now())) continue;  // changed since ranked
        MigrationOrder order{.id = next_migration_id_++,
                             .vm = c.vm,
                             .source_node = node->name,
                             .target_node = dst->name,
                             .target_agent_address = dst->agent_address};
        node->Uncount(vm);
        vm.migration = order;
        node->Count(vm);
        dst->incoming[c.vm] = {order.id, vm.reserved, share};
        dst->reserved = dst->reserved + share;
        dst->committed = dst->committed + vm.reserved;
        if (store_ != nullptr) {
          LedgerRecord r;
          *r.mutable_migration_started() = MigrationRecordOf(order);
          vm.last_seq = Log(r);
          wait = std::max(wait, vm.last_seq);
        }
        LOG(INFO) << "node " << node->name << " is above its watermark " << watermark.ToString()
                  << ": migrating VM " << c.vm << " (" << vm.reserved.ToString() << ") to node "
                  << dst->name << " (order " << order.id << ", policy " << policy_->name() << ")";
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
    TwoLocks<Node> locks(src, dst);
    const Incoming in = dst->incoming.at(vm_name);
    dst->reserved = dst->reserved - in.share;
    dst->committed = dst->committed - in.amount;
    dst->incoming.erase(vm_name);
    Vm vm = src->vms.at(vm_name);
    src->Forget(vm_name);
    vm.migration.reset();
    // Whichever agent holds the VM now has just been heard from.
    vm.heard = true;
    Node* home = succeeded ? dst : src;
    if (store_ != nullptr) {
      LedgerRecord r;
      MigrationEnded* e = r.mutable_migration_ended();
      e->set_id(order_id);
      e->set_vm(vm_name);
      e->set_succeeded(succeeded);
      vm.last_seq = seq = Log(r);
    }
    if (succeeded) {
      dst->Add(vm_name, std::move(vm));
    } else {
      src->Add(vm_name, std::move(vm));
    }
    it->second = home;
    LOG(INFO) << ctx << ": " << (succeeded ? "succeeded, now on node " : "failed, stays on node ")
              << home->name;
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
          .reserved = vm.reserved,
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
    for (Node* n : registry_->sorted) *snap.add_nodes() = n->Record();
    for (Node* n : registry_->sorted) {
      std::vector<const std::pair<const std::string, Vm>*> vms;
      for (const auto& entry : n->vms) vms.push_back(&entry);
      std::sort(vms.begin(), vms.end(), [](auto* a, auto* b) { return a->first < b->first; });
      for (const auto* entry : vms) {
        const Vm& vm = entry->second;
        VmRecord* v = snap.add_vms();
        v->set_name(entry->first);
        v->set_node(n->name);
        v->mutable_bounds()->set_min_cu(vm.bounds.min_cu);
        v->mutable_bounds()->set_max_cu(vm.bounds.max_cu);
        v->mutable_compute_unit()->set_milli_cpu(vm.cu.milli_cpu);
        v->mutable_compute_unit()->set_memory_bytes(vm.cu.memory_bytes);
        *v->mutable_reserved() = core::ToProto(vm.reserved);
        *v->mutable_requested() = core::ToProto(vm.requested);
        v->set_cpu_overcommit_milli(vm.overcommit.cpu_milli);
        v->set_memory_overcommit_milli(vm.overcommit.memory_milli);
        v->set_migratable(vm.migratable);
        v->set_created_unix_micros(absl::ToUnixMicros(vm.created));
        if (vm.migration) *v->mutable_migration() = MigrationRecordOf(*vm.migration);
      }
    }
    snap.set_next_migration_id(next_migration_id_);
    // Every node is locked, so nothing is appended between the cut and the copy above.
    snap.set_seq(store_->Cut());
  }
  return store_->WriteSnapshot(snap);
}

namespace {

absl::StatusOr<Resources> AmountFromProto(const api::Resources& p, absl::string_view what) {
  Resources r{p.milli_cpu(), p.memory_bytes()};
  RETURN_IF_ERROR(CheckAmount(r, what));
  return r;
}

}  // namespace

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
      ASSIGN_OR_RETURN(vm.reserved, AmountFromProto(r.reserved(), "reserved"));
      ASSIGN_OR_RETURN(vm.requested, AmountFromProto(r.requested(), "requested"));
      vm.overcommit = {r.cpu_overcommit_milli(), r.memory_overcommit_milli()};
      vm.migratable = r.migratable();
      vm.created = absl::FromUnixMicros(r.created_unix_micros());
      absl::Status valid = CheckComputeUnit(vm.cu);
      if (valid.ok()) valid = CheckBounds(vm.bounds, vm.cu);
      if (valid.ok()) valid = CheckOvercommit(vm.overcommit);
      if (valid.ok()) valid = CheckSize(vm.reserved, vm.cu, vm.bounds, "reserved");
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
      ASSIGN_OR_RETURN(Resources reserved, AmountFromProto(r.reserved(), "reserved"));
      ASSIGN_OR_RETURN(Resources requested, AmountFromProto(r.requested(), "requested"));
      if (absl::Status s = CheckSize(reserved, vm.cu, vm.bounds, "reserved"); !s.ok()) {
        return Corrupt(absl::StrCat("VM ", r.vm(), ": ", s.message()));
      }
      if (vm.migration) return Corrupt(absl::StrCat("resize of migrating VM ", r.vm()));
      n->Uncount(vm);
      vm.reserved = reserved;
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
      TwoLocks<Node> locks(src, dst);
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
      TwoLocks<Node> locks(src, dst);
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
      dst->incoming[m.vm()] = {m.id(), vm.reserved, share};
      dst->reserved = dst->reserved + share;
      dst->committed = dst->committed + vm.reserved;
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
      TwoLocks<Node> locks(src, dst);
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
        RETURN_IF_ERROR(Annotate(CheckSize(vm.reserved, vm.cu, vm.bounds, "reserved"),
                                 absl::StrCat(ctx, " VM ", name)));
        auto idx = vm_index_.find(name);
        if (idx == vm_index_.end() || idx->second != n) {
          return absl::InternalError(absl::StrCat(ctx, ": VM ", name, " is not indexed here"));
        }
        reserved = reserved + vm.share();
        committed = committed + vm.reserved;
        if (vm.migration) {
          migrating = migrating + vm.share();
          auto t = registry_->by_name.find(vm.migration->target_node);
          if (t == registry_->by_name.end() || t->second == n ||
              vm.migration->source_node != n->name) {
            return absl::InternalError(absl::StrCat(ctx, ": VM ", name, " migrates nowhere"));
          }
          auto in = t->second->incoming.find(name);
          if (in == t->second->incoming.end() || in->second.order_id != vm.migration->id ||
              in->second.share != vm.share() || in->second.amount != vm.reserved) {
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
      if (n->reserved.AnyGreaterThan(n->total)) {
        return absl::InternalError(absl::StrCat(ctx, ": reserved ", n->reserved.ToString(),
                                                " exceeds the total ", n->total.ToString()));
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
