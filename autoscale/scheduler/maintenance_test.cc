// The maintenance rounds with explicit Ticks and a manual clock (no sleeping): balancing against
// the watermark, the snapshot cadence, and stopping when the store fails.
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

  ledger::MemoryStore inner_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
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

  ASSERT_TRUE(maintenance_->Tick().ok());
  const std::map<std::string, std::string> want = {{"old", "empty"}};
  EXPECT_EQ(Migrating(), want) << "the oldest VM leaves; 5 CU stay under the watermark";
  EXPECT_EQ(ledger_->MigrationOrders("full")->size(), 1u);
  EXPECT_TRUE(ledger_->MigrationOrders("at")->empty());

  // What stays on the node is under its watermark now: the next round orders nothing more.
  ASSERT_TRUE(maintenance_->Tick().ok());
  EXPECT_EQ(Migrating(), want);
  ASSERT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(MaintenanceTest, SnapshotsAtTheCadence) {
  Open(/*snapshot_every=*/3);
  AddNode("n1", 16, 0.9);  // record 1
  ASSERT_TRUE(maintenance_->Tick().ok());
  EXPECT_EQ(store_->snapshots(), 0) << "1 record of 3";
  Place("a", 1, "n1");  // record 2
  ASSERT_TRUE(maintenance_->Tick().ok());
  EXPECT_EQ(store_->snapshots(), 0) << "2 records of 3";
  Place("b", 1, "n1");  // record 3
  ASSERT_TRUE(maintenance_->Tick().ok());
  EXPECT_EQ(store_->snapshots(), 1);
  const ledger::StoredState stored = store_->Contents();
  ASSERT_TRUE(stored.snapshot.has_value());
  EXPECT_EQ(stored.snapshot->seq(), 3u);
  EXPECT_TRUE(stored.records.empty()) << "the snapshot compacted the log";
  EXPECT_EQ(ledger_->store_stats()->records_since_snapshot, 0u);

  ASSERT_TRUE(maintenance_->Tick().ok());
  EXPECT_EQ(store_->snapshots(), 1) << "nothing new to compact";
}

TEST_F(MaintenanceTest, AFailedStoreStopsTheRounds) {
  Open(/*snapshot_every=*/1);
  AddNode("n1", 16, 0.9);
  ASSERT_TRUE(maintenance_->Tick().ok());
  ASSERT_EQ(store_->snapshots(), 1);
  AddNode("n2", 16, 0.9);
  store_->Fail(absl::DataLossError("/data/ledger/log.7: write: No space left on device"));

  const absl::Status failed = maintenance_->Tick();
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss) << failed;
  EXPECT_NE(failed.message().find("the ledger's log failed"), std::string::npos) << failed;
  EXPECT_NE(failed.message().find("No space left"), std::string::npos) << failed;
  EXPECT_EQ(store_->snapshots(), 1) << "no snapshot of a ledger whose log failed";

  // Run: the first round finds the failure and returns it; no second wait.
  int waits = 0;
  const absl::Status run = maintenance_->Run(absl::Seconds(1), [&](absl::Duration) {
    ++waits;
    return false;
  });
  EXPECT_EQ(run.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(waits, 1);
}

TEST_F(MaintenanceTest, RunMakesARoundAfterEachWaitUntilToldToStop) {
  Open(/*snapshot_every=*/1);
  AddNode("n1", 16, 0.9);
  std::vector<absl::Duration> waits;
  const absl::Status run = maintenance_->Run(absl::Milliseconds(250), [&](absl::Duration d) {
    waits.push_back(d);
    clock_.Advance(d);
    if (waits.size() == 4) return true;
    // A record for every round to snapshot: the snapshot count counts the rounds.
    AddNode("n" + std::to_string(waits.size() + 1), 16, 0.9);
    return false;
  });
  EXPECT_TRUE(run.ok()) << run;
  EXPECT_EQ(waits, std::vector<absl::Duration>(4, absl::Milliseconds(250)));
  EXPECT_EQ(store_->snapshots(), 3) << "one round after each of the three waits that said go on";
}

}  // namespace
}  // namespace autoscale::scheduler
