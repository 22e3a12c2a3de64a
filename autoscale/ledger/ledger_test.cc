#include "autoscale/ledger/ledger.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/memory_store.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

const Resources kCu{250, kGiB};

class LedgerTest : public ::testing::Test {
 protected:
  LedgerOptions Options() {
    LedgerOptions o;
    o.clock = &clock_;
    o.placement.randomize = false;
    return o;
  }
  void SetUp() override { ledger_ = std::make_unique<Ledger>(Options()); }

  void AddNode(const std::string& name, Resources total, double watermark = 0) {
    ASSERT_TRUE(ledger_
                    ->RegisterNode({.name = name,
                                    .total = total,
                                    .watermark = watermark,
                                    .agent_address = name + ":7000"})
                    .ok());
  }
  PlaceVmRequest Spec(const std::string& name, uint32_t initial_cu, uint32_t max_cu = 16,
                      bool migratable = false) {
    return {.name = name,
            .bounds = {1, max_cu},
            .compute_unit = kCu,
            .initial = kCu * initial_cu,
            .overcommit = {},
            .migratable = migratable};
  }
  std::string Place(const PlaceVmRequest& spec, const std::string& node = "") {
    clock_.Advance(absl::Seconds(1));  // distinct ages
    absl::StatusOr<Placement> p = ledger_->PlaceVm(spec, node);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? p->node : "";
  }
  absl::StatusOr<Permit> Ask(const std::string& node, const std::string& vm, Resources r,
                             std::optional<Resources> last = std::nullopt) {
    return ledger_->Request(
        {.node = node, .vm = vm, .compute_unit = kCu, .resources = r, .last_permit = last});
  }
  Resources Reserved(const std::string& node) { return ledger_->GetNode(node)->reserved; }

  ManualClock clock_;
  std::unique_ptr<Ledger> ledger_;
};

TEST(NodeShareTest, DividesByTheFactorRoundingUp) {
  EXPECT_EQ(NodeShare({1000, 3 * kGiB}, {1000, 1000}), (Resources{1000, 3 * kGiB}));
  EXPECT_EQ(NodeShare({1000, 3 * kGiB}, {1500, 2000}), (Resources{667, 3 * kGiB / 2}));
}

TEST_F(LedgerTest, RegisterNodeValidatesAndUpdates) {
  EXPECT_EQ(ledger_->RegisterNode({.name = "", .total = {1000, kGiB}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->RegisterNode({.name = "n", .total = {0, kGiB}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->RegisterNode({.name = "n", .total = {-1, kGiB}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ledger_->RegisterNode({.name = "n", .total = {1000, kGiB}, .watermark = 1.5}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ledger_->ListNodes().empty());

  absl::StatusOr<NodeInfo> n = ledger_->RegisterNode({.name = "n", .total = {4000, 16 * kGiB}});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->watermark_fraction, 0.9);  // the default
  EXPECT_EQ(n->watermark, (Resources{3600, static_cast<int64_t>(16 * kGiB * 0.9)}));

  Place(Spec("vm", 8));  // 2000m / 8 GiB
  // A total below what is reserved is accepted: the node is over capacity until it fits again.
  absl::StatusOr<NodeInfo> small = ledger_->RegisterNode({.name = "n", .total = {1000, 4 * kGiB}});
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_TRUE(small->over_capacity);
  EXPECT_TRUE(ledger_->CheckInvariants().ok()) << ledger_->CheckInvariants();
  n = ledger_->RegisterNode({.name = "n", .total = {2000, 8 * kGiB}, .watermark = 1});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->total, (Resources{2000, 8 * kGiB}));
  EXPECT_EQ(n->watermark, n->total);
  EXPECT_FALSE(n->over_capacity);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(LedgerTest, DecreaseAppliesAtOnce) {
  AddNode("n", {4000, 16 * kGiB});
  Place(Spec("vm", 8));
  absl::StatusOr<Permit> p = Ask("n", "vm", kCu * 2);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->resources, kCu * 2);
  EXPECT_EQ(Reserved("n"), kCu * 2);
}

TEST_F(LedgerTest, IncreaseGrantedFullyWhenThereIsRoom) {
  AddNode("n", {4000, 16 * kGiB});
  Place(Spec("vm", 1));
  absl::StatusOr<Permit> p = Ask("n", "vm", kCu * 8);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->resources, kCu * 8);
  EXPECT_EQ(ledger_->GetNode("n")->committed, kCu * 8);
}

TEST_F(LedgerTest, IncreaseGrantedPartlyInWholeComputeUnits) {
  // 1100m / 16 GiB: CPU has room for 4 CU (1000m) but not 4.4; memory for everything.
  AddNode("n", {1100, 16 * kGiB});
  Place(Spec("vm", 1));
  absl::StatusOr<Permit> p = Ask("n", "vm", kCu * 8);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->resources, (Resources{1000, 8 * kGiB}));  // CPU partly, memory fully
  EXPECT_EQ(ledger_->ListVms()[0].requested, kCu * 8);
  // Full: nothing more, but the permit stays.
  p = Ask("n", "vm", kCu * 8);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, (Resources{1000, 8 * kGiB}));
}

TEST_F(LedgerTest, ResourcesAreGrantedIndependently) {
  // Memory is short, CPU is not: CPU grows, memory stays.
  AddNode("n", {8000, 3 * kGiB});
  Place(Spec("a", 2));
  Place(Spec("b", 1));
  absl::StatusOr<Permit> p = Ask("n", "b", kCu * 4);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, (Resources{1000, kGiB}));
  EXPECT_EQ(Reserved("n"), (Resources{1500, 3 * kGiB}));
}

TEST_F(LedgerTest, OvercommitScalesTheNodeShare) {
  // With 2x memory overcommit, 4 GiB of node memory holds 8 GiB of VM memory.
  AddNode("n", {8000, 4 * kGiB});
  PlaceVmRequest s = Spec("vm", 1);
  s.overcommit = {1000, 2000};
  Place(s);
  absl::StatusOr<Permit> p = Ask("n", "vm", kCu * 10);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, (Resources{2500, 8 * kGiB}));
  NodeInfo n = *ledger_->GetNode("n");
  EXPECT_EQ(n.reserved, (Resources{2500, 4 * kGiB}));
  EXPECT_EQ(n.committed, (Resources{2500, 8 * kGiB}));
}

TEST_F(LedgerTest, ImpossibleRequestsAreRefusedAndChangeNothing) {
  AddNode("n", {4000, 16 * kGiB});
  AddNode("m", {4000, 16 * kGiB});
  Place(Spec("vm", 2, /*max_cu=*/4), "n");
  const std::vector<VmInfo> before = ledger_->ListVms();
  struct Case {
    const char* name;
    PermitRequest request;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {"negative", {"n", "vm", kCu, {-250, kGiB}, {}}, absl::StatusCode::kInvalidArgument},
      {"not whole CUs", {"n", "vm", kCu, {300, kGiB}, {}}, absl::StatusCode::kInvalidArgument},
      {"above bounds", {"n", "vm", kCu, kCu * 5, {}}, absl::StatusCode::kInvalidArgument},
      {"below bounds", {"n", "vm", kCu, {0, kGiB}, {}}, absl::StatusCode::kInvalidArgument},
      {"other CU", {"n", "vm", kCu * 2, kCu * 2, {}}, absl::StatusCode::kInvalidArgument},
      {"bad last permit",
       {"n", "vm", kCu, kCu * 2, Resources{300, kGiB}},
       absl::StatusCode::kInvalidArgument},
      {"unknown node", {"x", "vm", kCu, kCu * 2, {}}, absl::StatusCode::kNotFound},
      {"unknown VM", {"n", "nope", kCu, kCu * 2, {}}, absl::StatusCode::kNotFound},
      {"VM on another node", {"m", "vm", kCu, kCu * 2, {}}, absl::StatusCode::kNotFound},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Permit> p = ledger_->Request(c.request);
    EXPECT_EQ(p.status().code(), c.code) << c.name << ": " << p.status();
    EXPECT_FALSE(p.status().message().empty()) << c.name;
  }
  EXPECT_EQ(ledger_->ListVms(), before);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(LedgerTest, PlacementValidatesTheSpec) {
  AddNode("n", {4000, 16 * kGiB});
  PlaceVmRequest s = Spec("vm", 2);
  s.bounds = {3, 2};
  EXPECT_EQ(ledger_->PlaceVm(s).status().code(), absl::StatusCode::kInvalidArgument);
  s = Spec("vm", 2);
  s.initial = {300, kGiB};
  EXPECT_EQ(ledger_->PlaceVm(s).status().code(), absl::StatusCode::kInvalidArgument);
  s = Spec("vm", 20);
  EXPECT_EQ(ledger_->PlaceVm(s).status().code(), absl::StatusCode::kInvalidArgument);
  s = Spec("vm", 2);
  s.overcommit.cpu_milli = 500;
  EXPECT_EQ(ledger_->PlaceVm(s).status().code(), absl::StatusCode::kInvalidArgument);
  s = Spec("", 2);
  EXPECT_EQ(ledger_->PlaceVm(s).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->PlaceVm(Spec("vm", 2), "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ledger_->ListVms().empty());
}

TEST_F(LedgerTest, PlacementFillsTowardsThePeakAndPrefersBigNodes) {
  AddNode("a", {4000, 16 * kGiB});
  AddNode("b", {4000, 16 * kGiB});
  // Below the peak, the fuller node scores higher.
  EXPECT_EQ(Place(Spec("first", 4), "a"), "a");
  EXPECT_EQ(Place(Spec("second", 2)), "a");
  // Past the peak (0.8), the emptier node wins: a would be at 14/16.
  EXPECT_EQ(Place(Spec("third", 8)), "b");
  // At equal usage, the bigger node wins.
  AddNode("big", {8000, 32 * kGiB});
  AddNode("small", {2000, 8 * kGiB});
  EXPECT_EQ(Place(Spec("fourth", 1)), "big");
}

TEST_F(LedgerTest, PlacementFailsWhenNoNodeHasRoom) {
  AddNode("a", {1000, 4 * kGiB});
  Place(Spec("one", 3));
  absl::StatusOr<Placement> p = ledger_->PlaceVm(Spec("two", 2));
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
  EXPECT_EQ(Reserved("a"), kCu * 3);
}

TEST_F(LedgerTest, PlacementIsIdempotentAndNamesAreUnique) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("vm", 2));
  ASSERT_TRUE(Ask("a", "vm", kCu * 3).ok());
  absl::StatusOr<Placement> again = ledger_->PlaceVm(Spec("vm", 2));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->node, "a");
  EXPECT_EQ(again->permit, kCu * 3);
  EXPECT_EQ(ledger_->PlaceVm(Spec("vm", 2, 8)).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ledger_->ListVms().size(), 1u);
}

TEST_F(LedgerTest, RandomizedPlacementSpreadsOverEqualNodes) {
  LedgerOptions o = Options();
  o.placement.randomize = true;
  o.seed = 7;
  ledger_ = std::make_unique<Ledger>(o);
  for (const char* n : {"a", "b", "c"}) AddNode(n, {64000, 256 * kGiB});
  std::map<std::string, int> count;
  for (int i = 0; i < 60; ++i) ++count[Place(Spec("vm" + std::to_string(i), 1))];
  EXPECT_EQ(count.size(), 3u);
  for (const auto& [node, n] : count) EXPECT_GT(n, 5) << node;
}

TEST_F(LedgerTest, ReleaseFreesTheReservation) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("vm", 4));
  ASSERT_TRUE(ledger_->ReleaseVm("vm").ok());
  EXPECT_EQ(Reserved("a"), Resources{});
  EXPECT_EQ(ledger_->ReleaseVm("vm").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Ask("a", "vm", kCu).status().code(), absl::StatusCode::kNotFound);
}

class MigrationTest : public LedgerTest {
 protected:
  void SetUp() override {
    LedgerTest::SetUp();
    // Watermark 0.5 of 4000m/16GiB: 2000m/8GiB.
    AddNode("src", {4000, 16 * kGiB}, 0.5);
    AddNode("dst", {4000, 16 * kGiB}, 0.5);
  }
};

TEST_F(MigrationTest, NothingMovesBelowTheWatermark) {
  Place(Spec("vm", 8, 16, true), "src");
  absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok());
  EXPECT_TRUE(orders->empty());
}

TEST_F(MigrationTest, OldestMigratableVmMovesUntilUnderTheWatermark) {
  Place(Spec("pinned", 4, 16, false), "src");  // oldest, not migratable
  Place(Spec("old", 2, 16, true), "src");
  Place(Spec("young", 2, 16, true), "src");
  Place(Spec("youngest", 2, 16, true), "src");
  // 10 CU reserved, watermark 8 CU: moving "old" (2 CU) is enough.
  absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok()) << orders.status();
  ASSERT_EQ(orders->size(), 1u);
  const MigrationOrder& o = (*orders)[0];
  EXPECT_EQ(o.vm, "old");
  EXPECT_EQ(o.source_node, "src");
  EXPECT_EQ(o.target_node, "dst");
  EXPECT_EQ(o.target_agent_address, "dst:7000");
  NodeInfo src = *ledger_->GetNode("src"), dst = *ledger_->GetNode("dst");
  EXPECT_EQ(src.migrating, kCu * 2);
  EXPECT_EQ(dst.reserved, kCu * 2);  // reserved on the target while it moves
  // Asking again returns the same order and starts nothing new.
  EXPECT_EQ(*ledger_->MigrationOrders("src"), *orders);
  // A migrating VM is not resized; its answers carry the order.
  absl::StatusOr<Permit> p = Ask("src", "old", kCu * 6);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu * 2);
  ASSERT_TRUE(p->migration.has_value());
  EXPECT_EQ(p->migration->id, o.id);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
  // Asking for less than its reservation, it is answered no more than it asked (an agent refuses
  // a permit above its request, and the order with it); the reservation stays.
  p = Ask("src", "old", kCu * 1);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu * 1);
  ASSERT_TRUE(p->migration.has_value());
  EXPECT_EQ(p->migration->id, o.id);
  EXPECT_EQ(ledger_->GetNode("src")->migrating, kCu * 2);
  EXPECT_EQ(ledger_->GetNode("dst")->reserved, kCu * 2);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());

  ASSERT_TRUE(ledger_->EndMigration(o.id, "old", /*succeeded=*/true).ok());
  EXPECT_EQ(ledger_->GetNode("src")->reserved, kCu * 8);
  EXPECT_EQ(ledger_->GetNode("src")->migrating, Resources{});
  EXPECT_EQ(ledger_->GetNode("dst")->reserved, kCu * 2);
  EXPECT_EQ(ledger_->ListVms("dst").at(0).name, "old");
  EXPECT_TRUE(Ask("dst", "old", kCu * 3).ok());
  EXPECT_EQ(Ask("src", "old", kCu * 3).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->EndMigration(o.id, "old", true).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MigrationTest, FailedMigrationReleasesTheTarget) {
  Place(Spec("a", 5, 16, true), "src");
  Place(Spec("b", 5, 16, true), "src");
  absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok());
  ASSERT_EQ(orders->size(), 1u);
  EXPECT_EQ(ledger_->EndMigration((*orders)[0].id + 1, "a", false).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(ledger_->EndMigration((*orders)[0].id, (*orders)[0].vm, false).ok());
  EXPECT_EQ(ledger_->GetNode("dst")->reserved, Resources{});
  EXPECT_EQ(ledger_->GetNode("src")->migrating, Resources{});
  EXPECT_EQ(ledger_->GetNode("src")->reserved, kCu * 10);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MigrationTest, VmTooBigAloneAndFullTargetsAreSkipped) {
  // "huge" alone is above the watermark (9 CU > 8 CU): moving it cannot help, so it stays.
  Place(Spec("huge", 9, 16, true), "src");
  absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok());
  EXPECT_TRUE(orders->empty());
  // A movable VM with no room anywhere stays too.
  Place(Spec("filler", 16), "dst");
  Place(Spec("small", 1, 16, true), "src");
  orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok());
  EXPECT_TRUE(orders->empty());
}

TEST_F(MigrationTest, NoTargetIsPushedAboveItsOwnWatermark) {
  // dst holds 5 CU (watermark 8): a 4 CU VM fits in its total but would put it at 9 CU, above
  // its watermark, and dst would send a VM straight back.
  Place(Spec("resident", 5, 16, false), "dst");
  Place(Spec("big", 4, 16, true), "src");
  Place(Spec("other", 5, 16, false), "src");
  absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok()) << orders.status();
  EXPECT_TRUE(orders->empty());
  EXPECT_EQ(ledger_->GetNode("dst")->reserved, kCu * 5);
  // Up to the watermark exactly is fine: with 4 CU on dst, it ends at 8 CU.
  ASSERT_TRUE(ledger_->ReleaseVm("resident").ok());
  Place(Spec("resident", 4, 16, false), "dst");
  orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok()) << orders.status();
  ASSERT_EQ(orders->size(), 1u);
  EXPECT_EQ((*orders)[0].vm, "big");
  absl::StatusOr<std::vector<MigrationOrder>> back = ledger_->MigrationOrders("dst");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->empty()) << "dst is not above its watermark";
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MigrationTest, ReleasingAMigratingVmFreesBothNodes) {
  Place(Spec("a", 5, 16, true), "src");
  Place(Spec("b", 5, 16, true), "src");
  ASSERT_EQ(ledger_->MigrationOrders("src")->size(), 1u);
  ASSERT_TRUE(ledger_->ReleaseVm("a").ok());
  EXPECT_EQ(ledger_->GetNode("dst")->reserved, Resources{});
  EXPECT_EQ(ledger_->GetNode("src")->reserved, kCu * 5);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MigrationTest, FewestBytesPolicyMovesLessMemory) {
  LedgerOptions o = Options();
  o.migration_policy = NewFewestBytesPolicy();
  ledger_ = std::make_unique<Ledger>(o);
  AddNode("src", {8000, 16 * kGiB}, 0.5);
  AddNode("dst", {8000, 16 * kGiB}, 0.5);
  // 11 GiB reserved, watermark 8 GiB: 3 GiB must go. Oldest-first would move the oldest VM
  // (4 GiB); the smallest cover is the 3 GiB one.
  Place(Spec("four", 4, 16, true), "src");
  Place(Spec("three", 3, 16, true), "src");
  Place(Spec("two", 2, 16, true), "src");
  Place(Spec("pinned", 2), "src");
  absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders("src");
  ASSERT_TRUE(orders.ok()) << orders.status();
  ASSERT_EQ(orders->size(), 1u);
  EXPECT_EQ((*orders)[0].vm, "three");
}

// --- durability through a store and recovery ---

class RecoveryTest : public LedgerTest {
 protected:
  void SetUp() override {
    auto store = std::make_unique<MemoryStore>();
    store_ = store.get();
    ledger_ = *Ledger::Open(Options(), std::move(store));
  }
  // A new ledger from what the store holds, as after a crash.
  void Restart() {
    StoredState contents = store_->Contents();
    ledger_.reset();
    auto store = std::make_unique<MemoryStore>(std::move(contents));
    store_ = store.get();
    absl::StatusOr<std::unique_ptr<Ledger>> l = Ledger::Open(Options(), std::move(store));
    ASSERT_TRUE(l.ok()) << l.status();
    ledger_ = *std::move(l);
  }
  MemoryStore* store_ = nullptr;
};

TEST_F(RecoveryTest, RebuildsExactly) {
  AddNode("a", {4000, 16 * kGiB}, 0.5);
  AddNode("b", {4000, 16 * kGiB}, 0.5);
  Place(Spec("x", 2, 16, true), "a");
  Place(Spec("y", 3, 16, true), "a");
  Place(Spec("z", 1), "b");
  ASSERT_TRUE(Ask("a", "y", kCu * 6).ok());
  ASSERT_TRUE(Ask("a", "x", kCu * 1).ok());
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 0u);
  Place(Spec("w", 2, 16, true), "a");
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);
  ASSERT_TRUE(ledger_->Snapshot().ok());
  ASSERT_TRUE(Ask("b", "z", kCu * 4).ok());
  ASSERT_TRUE(ledger_->ReleaseVm("w").ok());
  const std::vector<VmInfo> vms = ledger_->ListVms();
  std::vector<NodeInfo> nodes = ledger_->ListNodes();
  Restart();
  EXPECT_EQ(ledger_->ListVms(), vms);
  std::vector<NodeInfo> after = ledger_->ListNodes();
  for (NodeInfo& n : after) n.awaiting_agent = false;
  EXPECT_EQ(after, nodes);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

// Found by libFuzzer: an order keeps the target address it was issued with, also after the
// target re-registers elsewhere and the ledger is rebuilt from a snapshot.
TEST_F(RecoveryTest, MigrationOrdersRebuildAsIssued) {
  AddNode("a", {4000, 16 * kGiB}, 0.5);
  AddNode("b", {4000, 16 * kGiB}, 0.5);
  Place(Spec("x", 5, 16, true), "a");
  Place(Spec("y", 5, 16, true), "a");
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);
  ASSERT_TRUE(ledger_
                  ->RegisterNode({.name = "b",
                                  .total = {4000, 16 * kGiB},
                                  .watermark = 0.5,
                                  .agent_address = "b:9999"})
                  .ok());
  ASSERT_TRUE(ledger_->Snapshot().ok());
  const std::vector<VmInfo> vms = ledger_->ListVms();
  Restart();
  EXPECT_EQ(ledger_->ListVms(), vms);
}

TEST_F(RecoveryTest, GrowthWaitsForEveryAgentAfterARestart) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("x", 1), "a");
  Place(Spec("y", 1), "a");
  Restart();
  EXPECT_TRUE(ledger_->GetNode("a")->awaiting_agent);
  // Heard from x, not from y: x may shrink but not grow.
  absl::StatusOr<Permit> p = Ask("a", "x", kCu * 4, kCu);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu);
  EXPECT_EQ(ledger_->PlaceVm(Spec("new", 1), "a").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->PlaceVm(Spec("new", 1)).status().code(), absl::StatusCode::kResourceExhausted);
  // Once y is heard from, growth resumes: for y's own first request too (it was the last).
  p = Ask("a", "y", kCu * 2, kCu);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu * 2);
  EXPECT_FALSE(ledger_->GetNode("a")->awaiting_agent);
  p = Ask("a", "x", kCu * 4, kCu);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu * 4);
}

TEST_F(RecoveryTest, GrowthResumesAfterTheGracePeriod) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("x", 1), "a");
  Place(Spec("silent", 1), "a");
  Restart();
  EXPECT_EQ(Ask("a", "x", kCu * 2)->resources, kCu);
  clock_.Advance(absl::Seconds(31));
  EXPECT_FALSE(ledger_->GetNode("a")->awaiting_agent);
  EXPECT_EQ(Ask("a", "x", kCu * 2)->resources, kCu * 2);
}

TEST_F(RecoveryTest, AdoptsALastPermitTheLogLost) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("x", 1), "a");
  Restart();
  // The agent says it was granted 3 CU: the VM may use them, so the ledger holds them again.
  absl::StatusOr<Permit> p = Ask("a", "x", kCu * 3, kCu * 3);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu * 3);
  EXPECT_EQ(Reserved("a"), kCu * 3);
  EXPECT_EQ(ledger_->adopted_permits(), 1u);
  // A later last permit above the ledger is not adopted again: only the first word counts.
  p = Ask("a", "x", kCu * 2, kCu * 8);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resources, kCu * 2);
  Restart();
  EXPECT_EQ(Reserved("a"), kCu * 2);
}

TEST_F(RecoveryTest, AMigratingVmsLastPermitIsNotAdopted) {
  AddNode("a", {4000, 16 * kGiB}, 0.5);
  AddNode("b", {4000, 16 * kGiB}, 0.5);
  Place(Spec("x", 5, 16, true), "a");
  Place(Spec("y", 5, 16, true), "a");
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);
  const std::string moving = ledger_->MigrationOrders("a")->at(0).vm;
  Restart();
  // Its agent claims more than the log holds: the reservation on both nodes stays as ordered
  // (adopting it would log a resize of a migrating VM, which the log cannot replay).
  absl::StatusOr<Permit> p = Ask("a", moving, kCu * 6, kCu * 6);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->resources, kCu * 5);
  EXPECT_EQ(ledger_->adopted_permits(), 0u);
  EXPECT_EQ(Reserved("b"), kCu * 5);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
  Restart();
  EXPECT_EQ(Reserved("a"), kCu * 10);
  EXPECT_EQ(Reserved("b"), kCu * 5);
}

// A record whose amounts no ledger could have written is damage, like a bad checksum: DATA_LOSS
// naming the record (it was INVALID_ARGUMENT, as if a caller had asked for it).
TEST_F(RecoveryTest, ARecordWithImpossibleAmountsIsDataLoss) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("x", 1), "a");
  StoredState contents = store_->Contents();
  LedgerRecord r;
  VmResized* resized = r.mutable_vm_resized();
  resized->set_node("a");
  resized->set_vm("x");
  resized->mutable_permit()->set_milli_cpu(-250);
  resized->mutable_permit()->set_memory_bytes(kGiB);
  contents.records.push_back(r);
  ++contents.last_seq;
  absl::StatusOr<std::unique_ptr<Ledger>> l =
      Ledger::Open(Options(), std::make_unique<MemoryStore>(std::move(contents)));
  ASSERT_EQ(l.status().code(), absl::StatusCode::kDataLoss) << l.status();
  EXPECT_NE(l.status().message().find("record 3"), std::string::npos) << l.status();
  EXPECT_NE(l.status().message().find("negative"), std::string::npos) << l.status();
}

TEST_F(RecoveryTest, RecordsOnlyRealChanges) {
  AddNode("a", {4000, 16 * kGiB});
  Place(Spec("x", 2), "a");
  const uint64_t before = store_->Stats().records_appended;
  ASSERT_TRUE(Ask("a", "x", kCu * 2).ok());  // unchanged
  EXPECT_EQ(store_->Stats().records_appended, before);
  ASSERT_TRUE(Ask("a", "x", kCu * 3).ok());
  EXPECT_EQ(store_->Stats().records_appended, before + 1);
}

TEST_F(RecoveryTest, AdoptsALastPermitOnlyAsFarAsTheNodeHasRoom) {
  AddNode("a", kCu * 8);
  Place(Spec("x", 1), "a");
  Place(Spec("y", 4), "a");
  Restart();
  // The agent of x says it had 6 CU: the node has room for 4 of them beside y's 4.
  absl::StatusOr<Permit> p = Ask("a", "x", kCu * 6, kCu * 6);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->resources, kCu * 4) << "the permit says how much was taken back";
  EXPECT_EQ(Reserved("a"), kCu * 8);
  EXPECT_EQ(ledger_->adopted_permits(), 1u);
  EXPECT_EQ(ledger_->clipped_adoptions(), 1u);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
  // Registering the same total again is accepted (it was refused when adoption overfilled it).
  AddNode("a", kCu * 8);
  EXPECT_FALSE(ledger_->GetNode("a")->over_capacity);
}

TEST_F(RecoveryTest, MigrationOrdersKeepWhenTheyWereIssued) {
  AddNode("a", {4000, 16 * kGiB}, 0.5);
  AddNode("b", {4000, 16 * kGiB}, 0.5);
  Place(Spec("x", 5, 16, true), "a");
  Place(Spec("y", 5, 16, true), "a");
  const absl::Time ordered = clock_.Now();
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);
  EXPECT_EQ(ledger_->MigrationOrders("a")->at(0).started, ordered);
  clock_.Advance(absl::Minutes(5));
  Restart();
  EXPECT_EQ(ledger_->MigrationOrders("a")->at(0).started, ordered);
}

// --- limits ---

TEST_F(LedgerTest, NamesAndAddressesAreBounded) {
  const std::string longest(kMaxNameBytes, 'n'), longer(kMaxNameBytes + 1, 'n');
  EXPECT_TRUE(ledger_->RegisterNode({.name = longest, .total = kCu * 4}).ok());
  EXPECT_EQ(ledger_->RegisterNode({.name = longer, .total = kCu * 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status address =
      ledger_->RegisterNode({.name = "n", .total = kCu * 4, .agent_address = longer}).status();
  EXPECT_EQ(address.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(address.message().find("254 bytes"), std::string::npos) << address;
  EXPECT_EQ(ledger_->PlaceVm(Spec(longer, 1)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ledger_->PlaceVm(Spec(longest, 1)).ok());
  EXPECT_EQ(ledger_->ListNodes().size(), 1u);
}

TEST_F(LedgerTest, AChangeWhoseRecordWouldBeTooLargeIsRefusedAndNotWritten) {
  auto store = std::make_unique<MemoryStore>();
  MemoryStore* log = store.get();
  LedgerOptions options = Options();
  options.max_record_bytes = 100;
  ledger_ = *Ledger::Open(options, std::move(store));
  AddNode("n", kCu * 8);
  const uint64_t records = log->Stats().records_appended;
  // A VM record with a 200-byte name is more than 100 bytes.
  const absl::Status s = ledger_->PlaceVm(Spec(std::string(200, 'v'), 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("log record"), std::string::npos) << s;
  EXPECT_EQ(log->Stats().records_appended, records);
  EXPECT_TRUE(ledger_->ListVms().empty());
}

// A store short of space (Writable refuses growth) and one that cannot write at all.
class RefusingStore final : public LedgerStore {
 public:
  absl::StatusOr<StoredState> Recover() override { return inner_.Recover(); }
  absl::Status Writable(bool growth) const override {
    if (broken) return absl::UnavailableError("the disk is broken");
    if (full && growth) return absl::UnavailableError("the disk is full");
    return absl::OkStatus();
  }
  uint64_t Append(const LedgerRecord& r) override { return inner_.Append(r); }
  void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) override {
    inner_.WhenDurable(seq, std::move(done));
  }
  uint64_t Cut() override { return inner_.Cut(); }
  absl::Status WriteSnapshot(const LedgerSnapshot& s) override { return inner_.WriteSnapshot(s); }
  StoreStats Stats() const override { return inner_.Stats(); }

  bool full = false, broken = false;

 private:
  MemoryStore inner_;
};

TEST_F(LedgerTest, AStoreShortOfSpaceTakesOnlyChangesThatGiveBack) {
  auto store = std::make_unique<RefusingStore>();
  RefusingStore* disk = store.get();
  ledger_ = *Ledger::Open(Options(), std::move(store));
  AddNode("n", kCu * 16, 0.5);
  AddNode("m", kCu * 16, 0.5);
  Place(Spec("vm", 4, 16, true), "n");
  Place(Spec("other", 6, 16, true), "n");
  disk->full = true;
  const absl::Status grow = Ask("n", "vm", kCu * 6).status();
  EXPECT_EQ(grow.code(), absl::StatusCode::kUnavailable) << grow;
  EXPECT_NE(grow.message().find("full"), std::string::npos) << grow;
  EXPECT_EQ(ledger_->PlaceVm(Spec("new", 1)).status().code(), absl::StatusCode::kUnavailable);
  // Balancing would reserve on a target: not now.
  EXPECT_EQ(ledger_->MigrationOrders("n").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->GetVm("vm")->permit, kCu * 4);
  // A decrease, a release and a node's settings are recorded.
  EXPECT_EQ(Ask("n", "vm", kCu * 2)->resources, kCu * 2);
  EXPECT_TRUE(ledger_->CordonNode("m", true).ok());
  EXPECT_TRUE(ledger_->ReleaseVm("other").ok());
  // A store that cannot write refuses those too, and reads go on.
  disk->broken = true;
  EXPECT_EQ(Ask("n", "vm", kCu).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->ReleaseVm("vm").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Ask("n", "vm", kCu * 2)->resources, kCu * 2) << "no change: answered";
  EXPECT_EQ(ledger_->ListVms().size(), 1u);
  disk->full = disk->broken = false;
  EXPECT_EQ(Ask("n", "vm", kCu * 6)->resources, kCu * 6);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

// --- node lifecycle ---

TEST_F(LedgerTest, ACordonedNodeTakesNoPlacementsAndNoMigrations) {
  AddNode("a", kCu * 16);
  AddNode("b", kCu * 16);
  absl::StatusOr<NodeInfo> a = ledger_->CordonNode("a", true);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->cordoned);
  EXPECT_EQ(ledger_->PlaceVm(Spec("vm", 1), "a").status().code(),
            absl::StatusCode::kFailedPrecondition);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Place(Spec("vm" + std::to_string(i), 1)), "b");
  // Its VMs still grow and shrink.
  ASSERT_TRUE(ledger_->CordonNode("a", false).ok());
  Place(Spec("on-a", 1), "a");
  ASSERT_TRUE(ledger_->CordonNode("a", true).ok());
  EXPECT_EQ(Ask("a", "on-a", kCu * 3)->resources, kCu * 3);
  EXPECT_EQ(ledger_->CordonNode("nope", true).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LedgerTest, DrainOrdersEveryMigratableVmAwayAndReportsProgress) {
  AddNode("a", kCu * 16);
  AddNode("b", kCu * 16, 0.5);
  AddNode("c", kCu * 4);
  Place(Spec("m1", 2, 16, true), "a");
  Place(Spec("m2", 3, 16, true), "a");
  Place(Spec("m3", 6, 16, true), "a");
  Place(Spec("pinned", 1, 16, false), "a");
  absl::StatusOr<DrainProgress> p = ledger_->DrainNode("a");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->node.cordoned);
  EXPECT_TRUE(p->node.draining);
  EXPECT_FALSE(p->done);
  EXPECT_EQ(p->staying, (std::vector<std::string>{"pinned"}));
  // m1 and m2 fit under b's watermark (8 CU) or on c; m3 (6 CU) fits only on b, above its
  // watermark: a drain takes any room.
  std::map<std::string, std::string> targets;
  for (const MigrationOrder& o : p->migrating) targets[o.vm] = o.target_node;
  EXPECT_EQ(targets.size(), 3u);
  EXPECT_TRUE(p->waiting.empty());
  EXPECT_TRUE(ledger_->CheckInvariants().ok()) << ledger_->CheckInvariants();
  // The node's agent sees the orders; one fails and is ordered again on the next round.
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 3u);
  for (const MigrationOrder& o : p->migrating) {
    ASSERT_TRUE(ledger_->EndMigration(o.id, o.vm, o.vm != "m1").ok());
  }
  p = ledger_->DrainNode("a");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->migrating.size(), 1u);
  EXPECT_EQ(p->migrating[0].vm, "m1");
  ASSERT_TRUE(ledger_->EndMigration(p->migrating[0].id, "m1", true).ok());
  ASSERT_TRUE(ledger_->ReleaseVm("pinned").ok());
  p = ledger_->DrainNode("a");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->done);
  EXPECT_EQ(p->node.vm_count, 0u);
  // Nothing comes back: the node stays cordoned.
  EXPECT_EQ(Place(Spec("late", 1)), "b");
  EXPECT_TRUE(ledger_->RemoveNode("a", false).ok());
}

TEST_F(LedgerTest, ADrainWaitsForRoom) {
  AddNode("a", kCu * 16);
  AddNode("b", kCu * 4);
  Place(Spec("big", 6, 16, true), "a");
  absl::StatusOr<DrainProgress> p = ledger_->DrainNode("a");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->waiting, (std::vector<std::string>{"big"}));
  ASSERT_TRUE(ledger_->UpdateNode("b", kCu * 8, std::nullopt).ok());
  // The node's own order poll continues the drain.
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);
}

TEST_F(LedgerTest, RemoveNodeTakesOnlyAnEmptyNodeUnlessForced) {
  AddNode("a", kCu * 16, 0.5);
  AddNode("b", kCu * 16, 0.5);
  Place(Spec("x", 5, 16, true), "a");
  Place(Spec("y", 5, 16, true), "a");
  Place(Spec("z", 2, 16, true), "b");
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);  // one of x, y to b
  const absl::Status refused = ledger_->RemoveNode("a", false).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("2 VMs (x, y)"), std::string::npos) << refused;
  // b is the target of a's migration: removing it by force ends that migration as failed.
  absl::StatusOr<RemovedNode> r = ledger_->RemoveNode("b", true);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->dropped_vms.size(), 1u);
  EXPECT_EQ(r->dropped_vms[0].name, "z");
  ASSERT_EQ(r->cancelled_migrations.size(), 1u);
  EXPECT_EQ(r->cancelled_migrations[0].target_node, "b");
  EXPECT_EQ(ledger_->GetNode("b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->GetVm("z").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(ledger_->GetVm("x")->migration.has_value());
  EXPECT_FALSE(ledger_->GetVm("y")->migration.has_value());
  EXPECT_EQ(Ask("b", "z", kCu).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ledger_->CheckInvariants().ok()) << ledger_->CheckInvariants();
  // The name can be registered again, afresh.
  AddNode("b", kCu * 4);
  EXPECT_EQ(ledger_->GetNode("b")->vm_count, 0u);
  EXPECT_EQ(ledger_->GetNode("b")->reserved, Resources{});
}

TEST_F(LedgerTest, ATotalBelowTheReservationMakesTheNodeOverCapacity) {
  AddNode("a", kCu * 16);
  AddNode("b", kCu * 16);
  Place(Spec("x", 4, 16, true), "a");
  Place(Spec("y", 4, 16, true), "a");
  absl::StatusOr<NodeInfo> a = ledger_->UpdateNode("a", kCu * 6, std::nullopt);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->over_capacity);
  EXPECT_EQ(a->reserved, kCu * 8);
  EXPECT_TRUE(ledger_->CheckInvariants().ok()) << ledger_->CheckInvariants();
  // Nothing grows there; balancing moves a VM off it.
  EXPECT_EQ(Ask("a", "x", kCu * 5)->resources, kCu * 4);
  ASSERT_EQ(ledger_->MigrationOrders("a")->size(), 1u);
  const MigrationOrder o = ledger_->MigrationOrders("a")->at(0);
  ASSERT_TRUE(ledger_->EndMigration(o.id, o.vm, true).ok());
  EXPECT_FALSE(ledger_->GetNode("a")->over_capacity);
  EXPECT_EQ(ledger_->UpdateNode("a", std::nullopt, 1.5).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->UpdateNode("nope", kCu, std::nullopt).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LedgerTest, NewBoundsLetAVmGrowPastItsOldMaximum) {
  AddNode("a", kCu * 16);
  Place(Spec("x", 4, /*max_cu=*/4), "a");
  EXPECT_EQ(Ask("a", "x", kCu * 6).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<VmInfo> v = ledger_->UpdateVmBounds("x", {1, 8}, "a");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->bounds, (Bounds{1, 8}));
  EXPECT_EQ(Ask("a", "x", kCu * 6)->resources, kCu * 6);
  // Lower than its permit: the permit stays (the VM may be using it) until its agent shrinks it.
  v = ledger_->UpdateVmBounds("x", {1, 2});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->permit, kCu * 6);
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
  EXPECT_EQ(Ask("a", "x", kCu * 2, kCu * 6)->resources, kCu * 2);
  EXPECT_EQ(ledger_->UpdateVmBounds("x", {3, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->UpdateVmBounds("x", {1, 2}, "b").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace autoscale::ledger
