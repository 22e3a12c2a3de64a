// The maintenance rounds with explicit Ticks and a manual clock (no sleeping): balancing against
// the watermark, draining, expiring migration orders, the snapshot cadence and its back-off, and
// rounds that go on while the store cannot write.
#include "autoscale/scheduler/maintenance.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

constexpr core::Resources kCu{250, kGiB};

// A memory store that can be made to fail as a full or broken disk would: from then on nothing
// becomes durable and its stats carry the error. Counts the snapshots asked of it.
class FailingStore : public ledger::LedgerStore {
 public:
  absl::StatusOr<ledger::StoredState> Recover() override { return inner_.Recover(); }
  absl::Status Writable(bool) const override { return error(); }
  uint64_t Append(const ledger::LedgerRecord& record) override { return inner_.Append(record); }
  void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) override {
    if (absl::Status e = error(); !e.ok()) return done(e);
    inner_.WhenDurable(seq, std::move(done));
  }
  uint64_t Cut() override { return inner_.Cut(); }
  absl::Status WriteSnapshot(const ledger::LedgerSnapshot& snapshot) override {
    {
      absl::MutexLock lock(&mu_);
      ++snapshots_;
    }
    if (absl::Status e = error(); !e.ok()) return e;
    if (absl::Status e = SnapshotError(); !e.ok()) return e;
    return inner_.WriteSnapshot(snapshot);
  }
  ledger::StoreStats Stats() const override {
    ledger::StoreStats stats = inner_.Stats();
    stats.error = error();
    return stats;
  }

  void Fail(absl::Status error) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
  }
  // Snapshots fail (a full disk for the snapshot's file), the log does not.
  void FailSnapshots(absl::Status error) {
    absl::MutexLock lock(&mu_);
    snapshot_error_ = std::move(error);
  }
  int snapshots() const {
    absl::MutexLock lock(&mu_);
    return snapshots_;
  }
  ledger::StoredState Contents() const { return inner_.Contents(); }

 private:
  absl::Status error() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }
  absl::Status SnapshotError() const {
    absl::MutexLock lock(&mu_);
    return snapshot_error_;
  }

  ledger::MemoryStore inner_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  absl::Status snapshot_error_ ABSL_GUARDED_BY(mu_);
  int snapshots_ ABSL_GUARDED_BY(mu_) = 0;
};

class MaintenanceTest : public ::testing::Test {
 protected:
  // A durable ledger on a FailingStore.
  void Open(int64_t snapshot_every) {
    auto store = std::make_unique<FailingStore>();
    store_ = store.get();
    absl::StatusOr<std::unique_ptr<ledger::Ledger>> ledger = ledger::Ledger::Open(
        {.placement = {.randomize = false}, .clock = &clock_}, std::move(store));
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    maintenance_ = std::make_unique<Maintenance>(
        *ledger_, MaintenanceOptions{.snapshot_every = snapshot_every}, clock_);
  }

  void AddNode(const std::string& name, int cus, double watermark) {
    ASSERT_TRUE(ledger_
                    ->RegisterNode({.name = name,
                                    .total = kCu * cus,
                                    .watermark = watermark,
                                    .agent_address = name + ":7000"})
                    .ok());
  }
  void Place(const std::string& vm, int cus, const std::string& node) {
    clock_.Advance(absl::Seconds(1));  // distinct ages: the oldest VM leaves first
    absl::Status placed = ledger_
                              ->PlaceVm({.name = vm,
                                         .bounds = {1, 16},
                                         .compute_unit = kCu,
                                         .initial = kCu * cus,
                                         .migratable = true},
                                        node)
                              .status();
    ASSERT_TRUE(placed.ok()) << placed;
  }
  // VM -> the node it is migrating to, for every VM that migrates.
  std::map<std::string, std::string> Migrating() {
    std::map<std::string, std::string> out;
    for (const auto& vm : ledger_->ListVms()) {
      if (vm.migration.has_value()) out[vm.name] = vm.migration->target_node;
    }
    return out;
  }

  ManualClock clock_;
  FailingStore* store_ = nullptr;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<Maintenance> maintenance_;
};

TEST_F(MaintenanceTest, OrdersMigrationsOffANodeAboveItsWatermarkAndNoneBelow) {
  Open(/*snapshot_every=*/1000);
  AddNode("full", 16, 0.5);  // watermark 8 CU; holds 9
  AddNode("at", 16, 0.5);    // holds exactly its watermark: stays
  AddNode("empty", 32, 0.9);
  Place("old", 4, "full");
  Place("young", 5, "full");
  Place("at1", 8, "at");
  EXPECT_TRUE(Migrating().empty()) << "nothing moves before a round";

  maintenance_->Tick();
  const std::map<std::string, std::string> want = {{"old", "empty"}};
  EXPECT_EQ(Migrating(), want) << "the oldest VM leaves; 5 CU stay under the watermark";
  EXPECT_EQ(ledger_->MigrationOrders("full")->size(), 1u);
  EXPECT_TRUE(ledger_->MigrationOrders("at")->empty());

  // What stays on the node is under its watermark now: the next round orders nothing more.
  maintenance_->Tick();
  EXPECT_EQ(Migrating(), want);
  ASSERT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MaintenanceTest, SnapshotsAtTheCadence) {
  Open(/*snapshot_every=*/3);
  AddNode("n1", 16, 0.9);  // record 1
  maintenance_->Tick();
  EXPECT_EQ(store_->snapshots(), 0) << "1 record of 3";
  Place("a", 1, "n1");  // record 2
  maintenance_->Tick();
  EXPECT_EQ(store_->snapshots(), 0) << "2 records of 3";
  Place("b", 1, "n1");  // record 3
  maintenance_->Tick();
  EXPECT_EQ(store_->snapshots(), 1);
  const ledger::StoredState stored = store_->Contents();
  ASSERT_TRUE(stored.snapshot.has_value());
  EXPECT_EQ(stored.snapshot->seq(), 3u);
  EXPECT_TRUE(stored.records.empty()) << "the snapshot compacted the log";
  EXPECT_EQ(ledger_->store_stats()->records_since_snapshot, 0u);

  maintenance_->Tick();
  EXPECT_EQ(store_->snapshots(), 1) << "nothing new to compact";
}

TEST_F(MaintenanceTest, RoundsGoOnWhileTheStoreCannotWriteAndResumeAfter) {
  Open(/*snapshot_every=*/1);
  AddNode("full", 16, 0.5);
  AddNode("empty", 16, 0.9);
  maintenance_->Tick();
  ASSERT_EQ(store_->snapshots(), 1);
  Place("a", 5, "full");
  Place("b", 5, "full");
  store_->Fail(absl::UnavailableError("/data/ledger/log.7: write: No space left on device"));
  maintenance_->Tick();  // no crash, no exit: nothing it could do would be written
  EXPECT_EQ(store_->snapshots(), 1) << "no snapshot while the log cannot be written";
  EXPECT_TRUE(Migrating().empty());
  store_->Fail(absl::OkStatus());
  maintenance_->Tick();
  EXPECT_EQ(Migrating().size(), 1u) << "balancing resumes";
  EXPECT_EQ(store_->snapshots(), 2);
}

TEST_F(MaintenanceTest, AFailedSnapshotBacksOff) {
  Open(/*snapshot_every=*/1);
  AddNode("n1", 16, 0.9);
  store_->FailSnapshots(absl::ResourceExhaustedError("snapshot.tmp: No space left on device"));
  maintenance_->Tick();
  EXPECT_EQ(store_->snapshots(), 1);
  EXPECT_EQ(maintenance_->failed_snapshots(), 1u);
  // Rounds every 250 ms: the next tries come after 1 s, then 2 s more, then 4 s more.
  std::vector<int> tries_at;
  for (int round = 1; round <= 40; ++round) {
    clock_.Advance(absl::Milliseconds(250));
    const int before = store_->snapshots();
    maintenance_->Tick();
    if (store_->snapshots() != before) tries_at.push_back(round);
  }
  EXPECT_EQ(tries_at, (std::vector<int>{4, 12, 28}));
  // Once it succeeds, the cadence is back: the next one comes with the next record.
  store_->FailSnapshots(absl::OkStatus());
  clock_.Advance(absl::Seconds(8));
  maintenance_->Tick();
  ASSERT_EQ(store_->Contents().snapshot.has_value(), true);
  AddNode("n2", 16, 0.9);
  const int before = store_->snapshots();
  maintenance_->Tick();
  EXPECT_EQ(store_->snapshots(), before + 1);
}

TEST_F(MaintenanceTest, AnOrderNotReportedInTimeExpires) {
  Open(/*snapshot_every=*/1000);
  maintenance_ = std::make_unique<Maintenance>(
      *ledger_, MaintenanceOptions{.migration_timeout = absl::Minutes(60)}, clock_);
  AddNode("full", 16, 0.5);
  AddNode("empty", 16, 0.9);
  Place("old", 4, "full");
  Place("young", 5, "full");
  maintenance_->Tick();
  ASSERT_EQ(Migrating().size(), 1u);
  const ledger::MigrationOrder order = *ledger_->GetVm("old")->migration;
  clock_.Advance(absl::Minutes(59));
  maintenance_->Tick();
  EXPECT_EQ(Migrating().size(), 1u) << "not yet";
  clock_.Advance(absl::Minutes(2));
  maintenance_->Tick();
  // Ended as failed: the target's reservation is gone and the VM can be resized again (its
  // agent's next permit carries no order). The same round orders it again, afresh.
  EXPECT_EQ(ledger_->expired_migrations(), 1u);
  absl::StatusOr<ledger::VmInfo> vm = ledger_->GetVm("old");
  ASSERT_TRUE(vm.ok());
  ASSERT_TRUE(vm->migration.has_value()) << "the node is still above its watermark";
  EXPECT_NE(vm->migration->id, order.id);
  EXPECT_EQ(ledger_->EndMigration(order.id, "old", true).code(),
            absl::StatusCode::kFailedPrecondition)
      << "a late report of the expired order changes nothing";
  ASSERT_TRUE(ledger_->EndMigration(vm->migration->id, "old", false).ok());
  absl::StatusOr<ledger::Permit> p =
      ledger_->Request({.node = "full", .vm = "old", .compute_unit = kCu, .resources = kCu * 3});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->migration.has_value());
  EXPECT_EQ(p->resources, kCu * 3) << "resized again";
  EXPECT_EQ(ledger_->GetNode("empty")->reserved, core::Resources{});
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MaintenanceTest, DrainingNodesKeepGettingOrders) {
  Open(/*snapshot_every=*/1000);
  AddNode("a", 16, 0.9);
  AddNode("b", 4, 0.9);
  Place("x", 6, "a");
  ASSERT_TRUE(ledger_->DrainNode("a").ok());
  EXPECT_TRUE(Migrating().empty()) << "no room on b";
  ASSERT_TRUE(ledger_->UpdateNode("b", kCu * 16, std::nullopt).ok());
  maintenance_->Tick();
  EXPECT_EQ(Migrating(), (std::map<std::string, std::string>{{"x", "b"}}));
}

TEST_F(MaintenanceTest, RunMakesARoundAfterEachWaitUntilToldToStop) {
  Open(/*snapshot_every=*/1);
  AddNode("n1", 16, 0.9);
  std::vector<absl::Duration> waits;
  maintenance_->Run(absl::Milliseconds(250), [&](absl::Duration d) {
    waits.push_back(d);
    clock_.Advance(d);
    if (waits.size() == 4) return true;
    // A record for every round to snapshot: the snapshot count counts the rounds.
    AddNode("n" + std::to_string(waits.size() + 1), 16, 0.9);
    return false;
  });
  EXPECT_EQ(waits, std::vector<absl::Duration>(4, absl::Milliseconds(250)));
  EXPECT_EQ(store_->snapshots(), 3) << "one round after each of the three waits that said go on";
}

}  // namespace
}  // namespace autoscale::scheduler
