// Replay equals live: a long random run of the ledger's operations (grow and shrink requests, bad
// requests, placements, releases, node registrations and updates (totals below the reservation
// too), cordons, drains, node removals (forced and not), VM bounds changes, migration orders and
// their success or failure, snapshots, restarts with permits adopted from agents), seeded. At
// checkpoints all along, a fresh ledger is rebuilt from what the store holds (snapshot and log)
// and compared with the live one field by field: every node's total, watermark, address and sums,
// every VM's whole state, the incoming migrations, the VM index and the next migration id. A
// change made on one path only (in an operation but not in what it logs, or in replay but not
// live) shows up as a difference naming the node or VM and the field.
//
// Runs once on a MemoryStore and once on a FileStore (whose rebuild reads a copy of the directory,
// so the file format's round trip is covered too).
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/internal/ledger_peer.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "glog/logging.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {

namespace {

namespace fs = std::filesystem;
const Resources kCus[] = {{250, kGiB}, {500, 2 * kGiB}};
const uint32_t kFactors[] = {1000, 1250, 1500, 2000};

enum class StoreKind { kMemory, kFile };

// What the run did, to show that it exercised every kind of change.
struct Counts {
  int grants = 0, decreases = 0, bad_requests = 0, placed = 0, refused_placements = 0, released = 0,
      nodes_added = 0, nodes_updated = 0, over_capacity = 0, cordons = 0, drains = 0, removals = 0,
      forced_removals = 0, bounds_changed = 0, expired = 0, migrations_started = 0,
      migrations_succeeded = 0, migrations_failed = 0, snapshots = 0, restarts = 0, checkpoints = 0;
  uint64_t adopted = 0;
};

class RandomRun {
 public:
  RandomRun(StoreKind kind, uint64_t seed) : kind_(kind), rng_(seed) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/replay_equivalence.", seed);
    fs::remove_all(dir_);
    const absl::Status opened = Open(std::make_unique<MemoryStore>());
    CHECK(opened.ok()) << opened;
    for (int i = 0; i < 4; ++i) AddNode();
  }
  ~RandomRun() {
    ledger_.reset();
    fs::remove_all(dir_);
  }

  // One random operation; a wrong answer is a test failure.
  void Step() {
    clock_.Advance(absl::Milliseconds(Pick(10, 1000)));
    if (Pick(0, 199) == 0) clock_.Advance(absl::Seconds(31));  // past the recovery grace
    const int op = Pick(0, 999);
    if (op < 70 || (vms_.size() < 8 && op < 600)) return Place();
    if (op < 130) return Release();
    if (op < 270) return Migrations();
    if (op < 310) return AddNode();
    if (op < 370) return UpdateNode();
    if (op < 390) return PlaceAgain();
    if (op < 400) return Snapshot();
    if (op < 405) return Restart();
    if (op < 417) return Cordon();
    if (op < 422) return Drain();
    if (op < 426) return Remove();
    if (op < 440) return Bounds();
    if (op < 445) return Expire();
    return Ask();
  }

  // A fresh ledger from what the store holds now.
  absl::StatusOr<std::unique_ptr<Ledger>> Rebuild() {
    std::unique_ptr<LedgerStore> store;
    if (kind_ == StoreKind::kMemory) {
      store = std::make_unique<MemoryStore>(memory_->Contents());
    } else {
      // The live store keeps the directory locked: read a copy of its files.
      const std::string copy = dir_ + ".copy";
      fs::remove_all(copy);
      fs::create_directories(copy);
      for (const auto& e : fs::directory_iterator(dir_)) {
        if (e.path().filename() != "LOCK") fs::copy(e.path(), copy / e.path().filename());
      }
      absl::StatusOr<std::unique_ptr<FileStore>> files =
          FileStore::Open({.dir = copy, .sync = false});
      if (!files.ok()) return files.status();
      store = *std::move(files);
    }
    return Ledger::Open(Options(), std::move(store));
  }

  // Rebuilds a ledger from the store and compares it with the live one.
  void Checkpoint(int step) {
    SCOPED_TRACE(absl::StrCat("checkpoint after step ", step));
    ++counts_.checkpoints;
    absl::StatusOr<std::unique_ptr<Ledger>> opened = Rebuild();
    ASSERT_TRUE(opened.ok()) << opened.status();
    const std::unique_ptr<Ledger>& rebuilt = *opened;
    const std::vector<std::string> diff = internal::LedgerPeer::Diff(*ledger_, *rebuilt);
    EXPECT_TRUE(diff.empty()) << "the ledger rebuilt from its store differs from the live one:\n  "
                              << absl::StrJoin(diff, "\n  ");
    // The same through the public reads (a restarted ledger waits for its agents: the one
    // difference there may be).
    EXPECT_TRUE(rebuilt->ListVms() == ledger_->ListVms()) << "ListVms() differs";
    std::vector<NodeInfo> nodes = rebuilt->ListNodes(), live = ledger_->ListNodes();
    for (NodeInfo& n : nodes) n.awaiting_agent = false;
    for (NodeInfo& n : live) n.awaiting_agent = false;
    EXPECT_TRUE(nodes == live) << "ListNodes() differs";
    EXPECT_TRUE(rebuilt->CheckInvariants().ok()) << rebuilt->CheckInvariants();
    EXPECT_TRUE(ledger_->CheckInvariants().ok()) << ledger_->CheckInvariants();
  }

  Counts counts() const {
    Counts c = counts_;
    c.adopted += ledger_->adopted_permits();
    return c;
  }

 private:
  int64_t Pick(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  LedgerOptions Options() {
    return {.seed = 5, .clock = &clock_, .recovery_grace = absl::Seconds(30)};
  }

  // The live ledger, on `memory` or on the directory.
  absl::Status Open(std::unique_ptr<MemoryStore> memory) {
    std::unique_ptr<LedgerStore> store;
    if (kind_ == StoreKind::kMemory) {
      memory_ = memory.get();
      store = std::move(memory);
    } else {
      absl::StatusOr<std::unique_ptr<FileStore>> files =
          FileStore::Open({.dir = dir_, .sync = false});
      if (!files.ok()) return files.status();
      store = *std::move(files);
    }
    absl::StatusOr<std::unique_ptr<Ledger>> l = Ledger::Open(Options(), std::move(store));
    if (!l.ok()) return l.status();
    ledger_ = *std::move(l);
    return absl::OkStatus();
  }

  std::string RandomVm() { return vms_[Pick(0, vms_.size() - 1)]; }
  // A registered node (some names were removed; AddNode registers them again).
  std::string RandomNode() {
    std::vector<NodeInfo> nodes = ledger_->ListNodes();
    if (nodes.empty()) return "node0";
    return nodes[Pick(0, nodes.size() - 1)].name;
  }

  // A whole number of CUs within the VM's bounds, per resource.
  Resources RandomSize(const VmInfo& v) {
    return {v.compute_unit.milli_cpu * Pick(v.bounds.min_cu, v.bounds.max_cu),
            v.compute_unit.memory_bytes * Pick(v.bounds.min_cu, v.bounds.max_cu)};
  }

  PlaceVmRequest RandomSpec(const std::string& name) {
    const Resources cu = kCus[Pick(0, 1)];
    const uint32_t min = Pick(1, 2), max = min + Pick(0, 6);
    return {.name = name,
            .bounds = {min, max},
            .compute_unit = cu,
            .initial = cu * Pick(min, std::min(max, min + 2)),
            .overcommit = {kFactors[Pick(0, 3)], kFactors[Pick(0, 3)]},
            .migratable = Pick(0, 3) != 0};
  }

  void Place() {
    const std::string name = absl::StrCat("vm", next_vm_++);
    PlaceVmRequest spec = RandomSpec(name);
    const std::string node = Pick(0, 3) == 0 ? RandomNode() : "";
    absl::StatusOr<Placement> p = ledger_->PlaceVm(spec, node);
    if (p.ok()) {
      ++counts_.placed;
      vms_.push_back(name);
      specs_[name] = spec;
      EXPECT_EQ(p->permit, spec.initial);
      return;
    }
    ++counts_.refused_placements;
    EXPECT_TRUE(p.status().code() == absl::StatusCode::kResourceExhausted ||
                p.status().code() == absl::StatusCode::kUnavailable ||
                p.status().code() == absl::StatusCode::kFailedPrecondition)  // cordoned
        << p.status();
  }

  // Placing a VM again: the same spec returns its placement, another is refused.
  void PlaceAgain() {
    if (vms_.empty()) return;
    const std::string name = RandomVm();
    PlaceVmRequest spec = specs_.at(name);
    const bool same = Pick(0, 1) == 0;
    if (!same) spec.migratable = !spec.migratable;
    absl::StatusOr<Placement> p = ledger_->PlaceVm(spec);
    if (same) {
      EXPECT_TRUE(p.ok()) << p.status();
    } else {
      EXPECT_EQ(p.status().code(), absl::StatusCode::kAlreadyExists) << p.status();
    }
  }

  void Release() {
    if (vms_.empty()) return;
    const size_t i = Pick(0, vms_.size() - 1);
    ASSERT_TRUE(ledger_->ReleaseVm(vms_[i]).ok());
    specs_.erase(vms_[i]);
    vms_.erase(vms_.begin() + i);
    ++counts_.released;
  }

  void Ask() {
    if (vms_.empty()) return;
    const std::string name = RandomVm();
    absl::StatusOr<VmInfo> v = ledger_->GetVm(name);
    ASSERT_TRUE(v.ok()) << v.status();
    PermitRequest r{.node = v->node,
                    .vm = name,
                    .compute_unit = v->compute_unit,
                    .resources = RandomSize(*v),
                    .last_permit = v->permit};
    const int kind = Pick(0, 99);
    if (kind < 4) {
      // Not whole CUs: refused, nothing changes.
      r.resources.milli_cpu += v->compute_unit.milli_cpu / 2;
      EXPECT_EQ(ledger_->Request(r).status().code(), absl::StatusCode::kInvalidArgument);
      ++counts_.bad_requests;
      return;
    }
    if (kind < 8) {
      r.node = RandomNode();  // a stale node: refused unless it is the VM's
      if (r.node != v->node) {
        EXPECT_EQ(ledger_->Request(r).status().code(), absl::StatusCode::kNotFound);
        ++counts_.bad_requests;
        return;
      }
    } else if (kind < 20) {
      r.last_permit.reset();  // the agent restarted
    } else if (kind < 40) {
      // The agent holds more than the ledger (a permit the log lost): adopted if this is its
      // first word since the ledger restarted. As much as the node has room for, as a lost
      // grant would have been.
      absl::StatusOr<NodeInfo> n = ledger_->GetNode(v->node);
      ASSERT_TRUE(n.ok()) << n.status();
      const Resources free = Resources::SaturatingSub(n->total, n->reserved);
      const Resources& cu = v->compute_unit;
      const Resources most = v->compute_unit * v->bounds.max_cu;
      const Resources more = RandomSize(*v);
      r.last_permit =
          Resources{std::min({more.milli_cpu, most.milli_cpu,
                              v->permit.milli_cpu + free.milli_cpu / cu.milli_cpu * cu.milli_cpu}),
                    std::min({more.memory_bytes, most.memory_bytes,
                              v->permit.memory_bytes +
                                  free.memory_bytes / cu.memory_bytes * cu.memory_bytes})};
      r.last_permit = Resources::Max(*r.last_permit, v->permit);
    }
    absl::StatusOr<Permit> p = ledger_->Request(r);
    ASSERT_TRUE(p.ok()) << p.status();
    if (p->resources.AnyGreaterThan(v->permit)) ++counts_.grants;
    if (p->resources.AnyLessThan(v->permit)) ++counts_.decreases;
  }

  void Migrations() {
    const std::string node = RandomNode();
    absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders(node);
    ASSERT_TRUE(orders.ok()) << orders.status();
    for (const MigrationOrder& o : *orders) {
      EXPECT_EQ(o.source_node, node);
      if (!started_.contains(o.id)) {
        started_.insert(o.id);
        ++counts_.migrations_started;
      }
      const int end = Pick(0, 9);
      if (end < 3) {
        ASSERT_TRUE(ledger_->EndMigration(o.id, o.vm, true).ok());
        ++counts_.migrations_succeeded;
      } else if (end < 5) {
        ASSERT_TRUE(ledger_->EndMigration(o.id, o.vm, false).ok());
        ++counts_.migrations_failed;
      } else if (end < 6) {
        EXPECT_EQ(ledger_->EndMigration(o.id + 1000, o.vm, true).code(),
                  absl::StatusCode::kFailedPrecondition);
      }
    }
  }

  void AddNode() {
    std::string name;
    for (int i = 0; i < next_node_ && name.empty(); ++i) {
      if (!ledger_->GetNode(absl::StrCat("node", i)).ok()) name = absl::StrCat("node", i);
    }
    if (name.empty() && next_node_ >= 10) return UpdateNode();
    if (name.empty()) name = absl::StrCat("node", next_node_++);
    absl::StatusOr<NodeInfo> n =
        ledger_->RegisterNode({.name = name,
                               .total = {Pick(8, 32) * 250, Pick(8, 32) * kGiB},
                               .watermark = Pick(0, 4) == 0 ? 0 : Pick(5, 10) / 10.0,
                               .agent_address = absl::StrCat(name, ":1")});
    ASSERT_TRUE(n.ok()) << n.status();
    ++counts_.nodes_added;
  }

  // A new total (maybe below what the node reserves: over capacity), watermark or agent address.
  void UpdateNode() {
    const std::string name = RandomNode();
    absl::StatusOr<NodeInfo> before = ledger_->GetNode(name);
    ASSERT_TRUE(before.ok()) << before.status();
    NodeSpec spec{.name = name,
                  .total = before->total,
                  .watermark = before->watermark_fraction,
                  .agent_address = before->agent_address};
    switch (Pick(0, 2)) {
      case 0:
        spec.total = {Pick(8, 32) * 250, Pick(8, 32) * kGiB};
        break;
      case 1:
        spec.watermark = Pick(5, 10) / 10.0;
        break;
      default:
        spec.agent_address = absl::StrCat(name, ":", Pick(2, 9));
    }
    // The agent's registration, or an operator's update.
    absl::StatusOr<NodeInfo> n = Pick(0, 1) == 0
                                     ? ledger_->RegisterNode(spec)
                                     : ledger_->UpdateNode(name, spec.total, spec.watermark);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(n->over_capacity, n->reserved.AnyGreaterThan(spec.total));
    if (n->over_capacity) ++counts_.over_capacity;
    ++counts_.nodes_updated;
  }

  void Cordon() {
    ASSERT_TRUE(ledger_->CordonNode(RandomNode(), Pick(0, 1) == 0).ok());
    ++counts_.cordons;
  }

  void Drain() {
    absl::StatusOr<DrainProgress> p = ledger_->DrainNode(RandomNode());
    ASSERT_TRUE(p.ok()) << p.status();
    for (const MigrationOrder& o : p->migrating) {
      if (started_.insert(o.id).second) ++counts_.migrations_started;
    }
    ++counts_.drains;
  }

  void Remove() {
    if (ledger_->ListNodes().size() <= 2) return;
    const std::string name = RandomNode();
    const bool force = Pick(0, 1) == 0;
    const bool empty = ledger_->GetNode(name)->vm_count == 0;
    absl::StatusOr<RemovedNode> r = ledger_->RemoveNode(name, force);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
      EXPECT_FALSE(force);
      return;
    }
    for (const VmInfo& v : r->dropped_vms) {
      vms_.erase(std::find(vms_.begin(), vms_.end(), v.name));
      specs_.erase(v.name);
    }
    ++(empty ? counts_.removals : counts_.forced_removals);
  }

  // Migration orders older than a few seconds end as failed (maintenance's expiry).
  void Expire() {
    absl::StatusOr<std::vector<MigrationOrder>> ended =
        ledger_->ExpireMigrations(clock_.Now() - absl::Seconds(Pick(1, 20)));
    ASSERT_TRUE(ended.ok()) << ended.status();
    counts_.expired += ended->size();
  }

  // An agent's config changed its VM's bounds (its permit may end up outside them).
  void Bounds() {
    if (vms_.empty()) return;
    const std::string name = RandomVm();
    const uint32_t min = Pick(1, 3), max = min + Pick(0, 6);
    absl::StatusOr<VmInfo> v = ledger_->UpdateVmBounds(name, {min, max});
    ASSERT_TRUE(v.ok()) << v.status();
    specs_[name].bounds = {min, max};
    specs_[name].initial = specs_[name].compute_unit * min;
    ++counts_.bounds_changed;
  }

  void Snapshot() {
    ASSERT_TRUE(ledger_->Snapshot().ok());
    ++counts_.snapshots;
  }

  // The scheduler restarts: the live ledger is now one recovered from the store.
  void Restart() {
    counts_.adopted += ledger_->adopted_permits();
    std::unique_ptr<MemoryStore> memory;
    if (kind_ == StoreKind::kMemory) memory = std::make_unique<MemoryStore>(memory_->Contents());
    ledger_.reset();
    const absl::Status opened = Open(std::move(memory));
    ASSERT_TRUE(opened.ok()) << opened;
    ++counts_.restarts;
  }

  const StoreKind kind_;
  std::mt19937_64 rng_;
  std::string dir_;
  ManualClock clock_;
  MemoryStore* memory_ = nullptr;
  std::unique_ptr<Ledger> ledger_;
  int next_node_ = 0, next_vm_ = 0;
  std::vector<std::string> vms_;
  std::map<std::string, PlaceVmRequest> specs_;
  std::set<uint64_t> started_;
  Counts counts_;
};

class Quiet : public ::testing::Environment {
 public:
  // Thousands of migrations and adoptions would each log a line.
  void SetUp() override { FLAGS_minloglevel = 2; }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

class ReplayEquivalenceTest : public ::testing::TestWithParam<StoreKind> {};

TEST_P(ReplayEquivalenceTest, TheRebuiltLedgerEqualsTheLiveOneThroughoutARandomRun) {
  constexpr int kSteps = 20000, kEvery = 250;
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    RandomRun run(GetParam(), seed);
    for (int step = 1; step <= kSteps; ++step) {
      run.Step();
      if (step % kEvery == 0) run.Checkpoint(step);
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
    // The run exercised every kind of change, and snapshots and restarts in between.
    const Counts c = run.counts();
    EXPECT_GT(c.grants, 500);
    EXPECT_GT(c.decreases, 500);
    EXPECT_GT(c.bad_requests, 50);
    EXPECT_GT(c.placed, 300);
    EXPECT_GT(c.refused_placements, 10);
    EXPECT_GT(c.released, 300);
    EXPECT_GE(c.nodes_added, 6);
    EXPECT_GT(c.nodes_updated, 100);
    EXPECT_GT(c.over_capacity, 5);
    EXPECT_GT(c.cordons, 50);
    EXPECT_GT(c.drains, 30);
    EXPECT_GT(c.removals + c.forced_removals, 10);
    EXPECT_GT(c.forced_removals, 3);
    EXPECT_GT(c.bounds_changed, 100);
    EXPECT_GT(c.expired, 20);
    EXPECT_GT(c.migrations_started, 100);
    EXPECT_GT(c.migrations_succeeded, 30);
    EXPECT_GT(c.migrations_failed, 30);
    EXPECT_GT(c.snapshots, 50);
    EXPECT_GT(c.restarts, 20);
    EXPECT_GT(c.adopted, 10);
    EXPECT_EQ(c.checkpoints, kSteps / kEvery);
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, ReplayEquivalenceTest,
                         ::testing::Values(StoreKind::kMemory, StoreKind::kFile),
                         [](const ::testing::TestParamInfo<StoreKind>& info) {
                           return info.param == StoreKind::kMemory ? "MemoryStore" : "FileStore";
                         });

}  // namespace
}  // namespace autoscale::ledger
