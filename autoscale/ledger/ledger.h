// Ledger: the scheduler's single source of truth for what every node has handed out to its VMs.
//
// For each VM it keeps its permit: what the VM may use, per resource (milli-CPU, bytes). For each
// node it keeps the total, the watermark, what its VMs' permits reserve there (`reserved`: each
// permit divided by the VM's overcommit factor, so a node's `reserved` is not the sum of its VMs'
// permits), what they were committed (`committed`: the permits' sum, without overcommit) and the
// part of the reservation that is migrating away (neon-autoscaling.md section 3.2). It
//   - answers agents' requests: a decrease applies at once; an increase is granted in whole
//     compute-unit parts up to the node's free capacity, CPU and memory independently (fully,
//     partly or not), so a node's reservation never exceeds its total, whatever the order or
//     concurrency of requests;
//   - places new VMs on the node that fits them best (the reference's piecewise score, peak 0.8,
//     randomized), and releases them;
//   - orders migrations off nodes whose reservation (minus what already migrates) is above their
//     watermark, with a pluggable MigrationPolicy, and settles them when they end;
//   - with a LedgerStore, logs every change and answers only once the change is durable; after a
//     restart it is rebuilt from the store, and grants nothing new on a node until every VM's agent
//     on it has been heard from (or the grace period passed); an agent's `last_permit` above what
//     the log holds is adopted (the VM may be using it) as far as the node has room;
//   - runs a cluster's node lifecycle: cordon (no placements, no incoming migrations), drain
//     (cordon, then order every migratable VM away), remove (empty, or forced with what it drops
//     listed), update a node's total and watermark (a total below what is reserved is accepted:
//     the node is over capacity and sheds VMs as above its watermark) and a VM's bounds.
//
// Limits at the front door: names and addresses up to kMaxNameBytes, amounts up to kMaxAmount,
// and no change whose log record would be larger than the store reads back.
//
// Thread-safe. Each node has its own lock: requests for different nodes never wait for each other
// (with a store, a change also appends its record to the one log, a short critical section).
// Nodes are found through a read-mostly registry that readers consult without a shared lock.
//
//   Ledger ledger(LedgerOptions{});                                   // in memory
//   ledger.RegisterNode({.name = "n1", .total = {8000, 32 * kGiB}});
//   Placement p = *ledger.PlaceVm({.name = "vm1", .bounds = {1, 8}, .compute_unit = {250, kGiB},
//                                  .initial = {250, kGiB}});
//   Permit permit = *ledger.Request({.node = "n1", .vm = "vm1", .compute_unit = {250, kGiB},
//                                    .resources = {1000, 4 * kGiB}});
//   // permit.resources: up to 1000m/4GiB, in whole CUs, as far as n1 has room.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/migration_policy.h"
#include "autoscale/ledger/placement.h"
#include "autoscale/ledger/store.h"

namespace autoscale::ledger {

namespace internal {
struct Node;
struct Registry;
struct Vm;
struct LedgerPeer;
namespace change {
struct NodeRegistered;
struct NodeRemoved;
struct VmBoundsChanged;
struct VmPlaced;
struct VmResized;
struct VmReleased;
struct MigrationStarted;
struct MigrationEnded;
}  // namespace change
}  // namespace internal

using core::Bounds;
using core::Resources;

// The largest amount of one resource the ledger accepts anywhere (1 PiB, or 2^50 milli-CPU), so
// sums and scaled amounts never overflow.
inline constexpr int64_t kMaxAmount = int64_t{1} << 50;

// The longest node name, VM name or agent address the ledger takes (a DNS name's length).
inline constexpr size_t kMaxNameBytes = 253;

// How much a VM's node reserves for it: thousandths, 1500 = the node reserves 1/1.5 of what the
// VM may use. Each in [1000, 100000].
struct Overcommit {
  uint32_t cpu_milli = 1000;
  uint32_t memory_milli = 1000;

  friend bool operator==(const Overcommit&, const Overcommit&) = default;
};

// What a node reserves for a VM that may use `amount`: divided by the factor, rounded up.
Resources NodeShare(const Resources& amount, const Overcommit& overcommit);

struct NodeSpec {
  std::string name{};
  // What the node can hand out to VMs.
  Resources total{};
  // Fraction of `total` above which VMs are migrated away, (0, 1]; 0: the ledger's default.
  double watermark = 0;
  // The node agent's address for incoming migrations ("host:port").
  std::string agent_address{};
};

struct PlaceVmRequest {
  std::string name{};
  Bounds bounds{};
  Resources compute_unit{};
  // The size to start with: whole CUs within bounds, per resource.
  Resources initial{};
  Overcommit overcommit{};
  bool migratable = false;
};

struct MigrationOrder {
  uint64_t id = 0;
  std::string vm{};
  std::string source_node{};
  std::string target_node{};
  // Where the target node's agent listens for the incoming VM.
  std::string target_agent_address{};
  // When it was ordered (microseconds, as the log keeps it); InfinitePast in logs written before
  // it was kept.
  absl::Time started = absl::InfinitePast();

  friend bool operator==(const MigrationOrder&, const MigrationOrder&) = default;
};

struct NodeInfo {
  std::string name{};
  Resources total{};
  double watermark_fraction = 0;
  Resources watermark{};
  // Sum of the VMs' shares (overcommit applied), incoming migrations included.
  Resources reserved{};
  // Sum of what the VMs may use (no overcommit), incoming migrations included.
  Resources committed{};
  // The part of `reserved` that belongs to VMs migrating away.
  Resources migrating{};
  std::string agent_address{};
  // True while growth on this node waits for its agents after a restart.
  bool awaiting_agent = false;
  size_t vm_count = 0;
  // No placements, no incoming migrations.
  bool cordoned = false;
  // Cordoned, and its migratable VMs are ordered away.
  bool draining = false;
  // Its total was lowered below what it had reserved: it grants nothing until enough VMs left.
  bool over_capacity = false;

  friend bool operator==(const NodeInfo&, const NodeInfo&) = default;
};

struct VmInfo {
  std::string name{};
  std::string node{};
  Bounds bounds{};
  Resources compute_unit{};
  // What the VM may use (its permit) and what its agent last asked for.
  Resources permit{};
  Resources requested{};
  Overcommit overcommit{};
  bool migratable = false;
  absl::Time created{};
  // Set while the VM migrates away.
  std::optional<MigrationOrder> migration{};

  friend bool operator==(const VmInfo&, const VmInfo&) = default;
};

// An agent's request for one VM: an increase asks, a decrease reports what already happened, an
// unchanged amount says "still using this".
struct PermitRequest {
  std::string node{};
  std::string vm{};
  // Must be the VM's compute unit.
  Resources compute_unit{};
  // The total the VM should have: whole CUs within the VM's bounds, per resource.
  Resources resources{};
  // The last permit the agent received; absent on its first request after a start.
  std::optional<Resources> last_permit{};
};

struct Permit {
  // The VM may use up to this. Never more than the request asked for: a migrating VM keeps a
  // larger reservation until its migration ends, but is told at most what it asked.
  Resources resources{};
  // Set while the scheduler moves the VM: the agent stops resizing it.
  std::optional<MigrationOrder> migration{};
};

struct Placement {
  std::string node{};
  // The VM's permit: its initial size.
  Resources permit{};
};

// Where a drain stands (DrainNode).
struct DrainProgress {
  NodeInfo node{};
  // VMs migrating away, each with its order.
  std::vector<MigrationOrder> migrating{};
  // Migratable VMs that no other node has room for yet (ordered once one has).
  std::vector<std::string> waiting{};
  // VMs that are not migratable: they stay until released (or the node is removed by force).
  std::vector<std::string> staying{};
  // No VM is left on the node.
  bool done = false;
};

// What a forced RemoveNode dropped.
struct RemovedNode {
  // The VMs that were on it, as they were.
  std::vector<VmInfo> dropped_vms{};
  // Migrations to or from it, ended as failed.
  std::vector<MigrationOrder> cancelled_migrations{};
};

class Ledger;

// Where a VM's entry was last found, for a caller that makes many requests for the same VMs (a
// simulation asks for 100,000 VMs every few steps): Request with a handle finds the VM without
// hashing its node's and its own name while the VM stays where it was. It never changes an
// answer: a handle that is empty, stale (the VM moved, its node gained or lost a VM or was
// removed) or was taken for another VM or ledger is refreshed by the lookup by name. One handle
// per VM, used by one thread at a time (the caller's, like the request).
class VmHandle {
 public:
  VmHandle() = default;

  // Starts loading the entry the handle points to into the CPU's cache, without reading or
  // checking it: a hint for a caller that will make a request with the handle soon (a
  // simulation, a few VMs before it reaches this one). Harmless on any handle, from the thread
  // that uses it.
  void Prefetch() const;

 private:
  friend class Ledger;
  // The ledger (Ledger::id_) and registry version (a node added or removed) it was taken at.
  uint64_t ledger_ = 0;
  uint64_t registry_version_ = 0;
  internal::Node* node_ = nullptr;
  std::pair<const std::string, internal::Vm>* entry_ = nullptr;
  uint64_t layout_ = 0;
};

struct LedgerOptions {
  // Watermark of nodes registered without one.
  double default_watermark = 0.9;
  PlacementOptions placement{};
  // Which VMs leave a node above its watermark; null: OldestFirstPolicy (the reference).
  std::shared_ptr<const MigrationPolicy> migration_policy{};
  // Seeds the randomization of placement.
  uint64_t seed = 0;
  // Null: the real clock. Used for VM ages and the recovery grace period.
  Clock* clock = nullptr;
  // After a restart, a node grants nothing new until every VM on it has been heard from, or
  // until this long has passed (agents ask at least every 15 s).
  absl::Duration recovery_grace = absl::Seconds(30);
  // The largest log record a change may have: the store's limit (tests lower it).
  uint32_t max_record_bytes = kMaxRecordBytes;
};

class Ledger {
 public:
  // An empty ledger in memory (no durability): simulations and tests.
  explicit Ledger(LedgerOptions options);
  // A durable ledger rebuilt from `store`. Fails when the store cannot be read (the error names
  // the file) or its records contradict each other.
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(LedgerOptions options,
                                                      std::unique_ptr<LedgerStore> store);
  ~Ledger();

  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Adds a node, or updates its total, watermark and agent address (as UpdateNode; a cordon or
  // drain stays).
  absl::StatusOr<NodeInfo> RegisterNode(const NodeSpec& spec);
  // Changes a registered node's total and/or watermark (absent: unchanged). A total below what
  // the node has reserved is accepted: the node is over capacity (NodeInfo::over_capacity),
  // grants nothing, and is above its watermark, so balancing moves VMs off it.
  absl::StatusOr<NodeInfo> UpdateNode(const std::string& node, std::optional<Resources> total,
                                      std::optional<double> watermark);
  // Cordons a node (no placements, no incoming migrations), or lifts a cordon (and a drain).
  absl::StatusOr<NodeInfo> CordonNode(const std::string& node, bool cordon);
  // Cordons the node, marks it draining and orders every migratable VM on it away (to other
  // nodes it fits on, those that stay under their watermark first). Maintenance (and the node's
  // own MigrationOrders) keep ordering the VMs that had no target, or whose migration failed.
  // Call it again to see the progress.
  absl::StatusOr<DrainProgress> DrainNode(const std::string& node);
  // Removes a node. Without `force` only an empty one (no VMs, nothing migrating in):
  // FAILED_PRECONDITION naming what is left. With `force` whatever it holds is dropped
  // (returned): its VMs are forgotten, migrations to and from it end as failed.
  absl::StatusOr<RemovedNode> RemoveNode(const std::string& node, bool force);
  // Sets a VM's bounds (its agent's configuration changed); `node`, when given, must be the
  // VM's. Its permit stays as it is, also outside the new bounds, until its agent asks: a
  // request must be within the bounds, so it moves the permit inside them.
  absl::StatusOr<VmInfo> UpdateVmBounds(const std::string& vm, const Bounds& bounds,
                                        const std::string& node = "");

  // Answers an agent's request. Errors (nothing changes): INVALID_ARGUMENT for amounts that are
  // negative, not whole CUs, outside the VM's bounds or in another CU; NOT_FOUND for an unknown
  // node or a VM not on that node; UNAVAILABLE when the change cannot be made durable.
  absl::StatusOr<Permit> Request(const PermitRequest& request);
  // The same answer, found through `handle` (VmHandle) when it still points at the VM, and
  // leaving it pointing there.
  absl::StatusOr<Permit> Request(const PermitRequest& request, VmHandle& handle);
  // The same, calling `done` once the answer is durable (maybe before returning, maybe later from
  // the store's thread). For servers that must not block a thread per request.
  void RequestAsync(const PermitRequest& request, std::function<void(absl::StatusOr<Permit>)> done);

  // Places a new VM on the best node that fits it (or on `node` only, when given) and reserves
  // its initial size there. Placing a VM again with the same request returns its placement.
  // Errors: INVALID_ARGUMENT, ALREADY_EXISTS (another VM of that name), NOT_FOUND (`node`),
  // RESOURCE_EXHAUSTED (no node has room), UNAVAILABLE (`node` awaits its agent after a restart).
  absl::StatusOr<Placement> PlaceVm(const PlaceVmRequest& request, const std::string& node = "");
  // Forgets a VM (and its incoming reservation if it was migrating).
  absl::Status ReleaseVm(const std::string& vm);

  // Migrations this node's agent must carry out as the source. If the node is above its
  // watermark, first chooses VMs to move (the migration policy) and a target for each (the
  // placement score among the other nodes that have room), reserving them there.
  absl::StatusOr<std::vector<MigrationOrder>> MigrationOrders(const std::string& node);
  // Settles a migration: on success the VM now lives on the target node; on failure it stays and
  // the target's reservation is released.
  absl::Status EndMigration(uint64_t order_id, const std::string& vm, bool succeeded);
  // Ends as failed every migration ordered before `issued_before` (an order of unknown age
  // counts from when this ledger was opened): the target's reservation is released and the VM
  // can be resized again; its agent's next permit comes without the order. Returns those ended.
  absl::StatusOr<std::vector<MigrationOrder>> ExpireMigrations(absl::Time issued_before);

  // Reads; `node` empty: all. Nodes by name; VMs by node then name.
  std::vector<NodeInfo> ListNodes(const std::string& node = "") const;
  std::vector<VmInfo> ListVms(const std::string& node = "") const;
  absl::StatusOr<NodeInfo> GetNode(const std::string& node) const;
  absl::StatusOr<VmInfo> GetVm(const std::string& vm) const;

  // Writes a snapshot of the whole ledger to the store and drops the log it covers. Briefly
  // stops every node. No-op without a store.
  absl::Status Snapshot();

  // Recomputes every node's sums from its VMs and checks every rule (reserved <= total, whole
  // CUs within bounds, migrations consistent on both nodes). For tests and fuzzing.
  absl::Status CheckInvariants() const;

  // What recovery found; permits adopted from agents since (and how many of them only in part,
  // for lack of room); the store's counters.
  const RecoveryInfo& recovery() const { return recovery_; }
  uint64_t adopted_permits() const { return adopted_permits_.load(std::memory_order_relaxed); }
  uint64_t clipped_adoptions() const { return clipped_adoptions_.load(std::memory_order_relaxed); }
  uint64_t expired_migrations() const {
    return expired_migrations_.load(std::memory_order_relaxed);
  }
  std::optional<StoreStats> store_stats() const;

 private:
  using Node = internal::Node;
  using Registry = internal::Registry;
  using Vm = internal::Vm;
  struct Candidate;
  // Reads the whole state, for replay_equivalence_test.
  friend struct internal::LedgerPeer;

  Ledger(LedgerOptions options, std::unique_ptr<LedgerStore> store);

  // Finds a node without a shared lock (a per-thread copy of the registry). Never null for a
  // registered node; nodes live as long as the ledger.
  Node* FindNode(std::string_view name) const;
  // Decides and applies an answer; the sequence number to wait for goes to `wait_seq`.
  absl::StatusOr<Permit> AnswerRequest(const PermitRequest& request, uint64_t* wait_seq,
                                       VmHandle* handle = nullptr);
  // The node of a request, through `handle` while it is current and names that node.
  Node* RequestNode(const PermitRequest& request, const VmHandle* handle) const;
  absl::Status WaitDurable(uint64_t seq);
  // OK if the store takes a change now (`growth`: one that hands out more); else UNAVAILABLE.
  absl::Status Writable(bool growth, std::string_view what) const;
  // INVALID_ARGUMENT if `record` is larger than a store takes. Called before the change is made.
  absl::Status CheckRecord(const LedgerRecord& record, std::string_view what) const;
  uint64_t Log(const LedgerRecord& record);

  // Scores every node that has room for `share`, best first. For a migration off
  // `migrating_from` (not null): every other node that takes it (Node::TakesMigration), or with
  // `any_room` every other node it fits on, those that take it first.
  std::vector<Candidate> RankNodes(const Resources& share, const Node* migrating_from,
                                   bool any_room = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  absl::Status BalanceNode(Node* node);
  // Orders `vm` (on `node`, not migrating) to the best target; false when no node has room.
  // `wait_seq` rises to the sequence number to wait for.
  bool StartMigration(Node* node, const std::string& vm, bool any_room, std::string_view why,
                      uint64_t* wait_seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  // A drain's round: orders every migratable VM of a draining node that is not moving yet.
  absl::StatusOr<DrainProgress> DrainStep(Node* node, uint64_t* wait_seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  // Applies and logs a node's new settings; the sequence number to wait for.
  absl::StatusOr<uint64_t> SetNode(const internal::change::NodeRegistered& change, Node* node,
                                   std::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  // A live node of that name (not removed), or null.
  Node* LiveNode(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);

  // The one mutation path (apply.cc). Every change to the state below, live or replayed, is
  // made by one of these: an operation decides, builds the change, applies it here and then logs
  // it (in that order, under the same locks); recovery reads the change back from the log,
  // checks it against the state and applies it here. Each requires registry_mu_ when it changes
  // the registry, the VM index or the migration ids, and the locks of the nodes it changes.
  //
  // `node`: the node of that name, locked by the caller, or null for a new one (created and
  // returned unlocked).
  Node* Apply(const internal::change::NodeRegistered& change, Node* node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  // `node` and every node a migration links to it, locked by the caller.
  void Apply(const internal::change::NodeRemoved& change, Node& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  static void Apply(const internal::change::VmBoundsChanged& change, Node& node, Vm& vm);
  Vm& Apply(const internal::change::VmPlaced& change, Node& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  // The request path: `node`'s lock only.
  static void Apply(const internal::change::VmResized& change, Node& node, Vm& vm);
  // `dst`: the target of the VM's migration, or null.
  void Apply(const internal::change::VmReleased& change, Node& src, Node* dst)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  Vm& Apply(const internal::change::MigrationStarted& change, Node& src, Node& dst)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  // Returns the VM where it now is (on `dst` if the migration succeeded).
  Vm& Apply(const internal::change::MigrationEnded& change, Node& src, Node& dst)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);

  // Recovery (recovery.cc): the state rebuilt from a snapshot and records, through Apply.
  absl::Status Restore(const StoredState& state);
  absl::Status Replay(const LedgerRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);

  void LockAll() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);
  void UnlockAll() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);

  const LedgerOptions options_;
  Clock& clock_;
  const std::shared_ptr<const MigrationPolicy> policy_;
  const std::unique_ptr<LedgerStore> store_;
  // Tells this ledger's per-thread registry copies from another's.
  const uint64_t id_;
  RecoveryInfo recovery_;
  std::atomic<uint64_t> adopted_permits_{0};
  std::atomic<uint64_t> clipped_adoptions_{0};
  std::atomic<uint64_t> expired_migrations_{0};
  // When this ledger was opened: the age of orders from logs that did not keep theirs.
  const absl::Time opened_;

  // Guards structural changes: the set of nodes, which node holds which VM, migration ids and
  // the placement randomness. Taken before any node lock, never while holding one. The request
  // path does not take it.
  mutable absl::Mutex registry_mu_;
  std::vector<std::unique_ptr<Node>> nodes_ ABSL_GUARDED_BY(registry_mu_);
  // Removed nodes stay allocated: a thread's copy of an older registry may still point to one
  // (it finds it marked removed).
  std::vector<std::unique_ptr<Node>> removed_nodes_ ABSL_GUARDED_BY(registry_mu_);
  std::shared_ptr<const Registry> registry_ ABSL_GUARDED_BY(registry_mu_);
  // Bumped (under registry_mu_) whenever registry_ is replaced.
  std::atomic<uint64_t> registry_version_{1};
  absl::flat_hash_map<std::string, Node*> vm_index_ ABSL_GUARDED_BY(registry_mu_);
  uint64_t next_migration_id_ ABSL_GUARDED_BY(registry_mu_) = 1;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(registry_mu_);

  // Serializes snapshots (writing one happens outside registry_mu_). Taken before registry_mu_.
  absl::Mutex snapshot_mu_;
};

}  // namespace autoscale::ledger
