// Crash consistency: the durable ledger (Ledger over a FileStore) on the fault-injecting file
// layer, driven by random operations (requests that grow and shrink, placements, releases,
// migrations and their ends, node registrations and updates, cordons, drains, removals, bounds
// changes, snapshots) and crashed at a random file operation: in the middle of a write, a sync,
// a snapshot (temporary file, rename, directory sync, old files removed) or a log rotation. Each
// crash is a process crash (the page cache survives), a power loss (everything not synced is
// lost) or a torn power loss (part of what was not synced survives). After each one the ledger is
// recovered from what the file layer holds and checked:
//   - every record the store acknowledged as durable is there, and so is every record an earlier
//     recovery read (it served them, so it must have made them durable);
//   - the recovered ledger equals the one rebuilt from exactly the records the test saw appended
//     up to there (nothing lost, added, reordered or changed; LedgerPeer compares every field);
//   - every answer the test got is kept: a VM's acknowledged permit, placement, release or move;
//     a node's registration or removal;
//   - no node is above its total unless the test lowered its total below its reservation, and
//     the ledger's invariants hold.
// A second case runs the same with the log's fdatasync turned off (FileStoreOptions::sync) and
// expects lost acknowledged records to be found: the checks can see a missing sync.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/fault_injection_file_system.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/internal/ledger_peer.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "glog/logging.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

using Crash = FaultInjectionFileSystem::Crash;

const char kDir[] = "/ledger";
const Resources kCu{250, kGiB};

// What the test saw the store do: every record appended (by sequence number, across restarts:
// a recovered store overwrites what a dead one appended after its last durable record) and the
// highest sequence number acknowledged durable.
struct Witness {
  absl::Mutex mu;
  std::map<uint64_t, std::string> records ABSL_GUARDED_BY(mu);
  std::atomic<uint64_t> acked{0};
};

// A FileStore that tells the Witness what it appends and acknowledges.
class WitnessedStore final : public LedgerStore {
 public:
  WitnessedStore(std::unique_ptr<FileStore> inner, Witness& witness)
      : inner_(std::move(inner)), witness_(witness) {}

  absl::StatusOr<StoredState> Recover() override { return inner_->Recover(); }
  absl::Status Writable(bool growth) const override { return inner_->Writable(growth); }
  uint64_t Append(const LedgerRecord& record) override {
    // The ledger appends under a node lock; the store orders the records; the map follows.
    absl::MutexLock l(&witness_.mu);
    const uint64_t seq = inner_->Append(record);
    witness_.records[seq] = record.SerializeAsString();
    return seq;
  }
  void WhenDurable(uint64_t seq, std::function<void(absl::Status)> done) override {
    inner_->WhenDurable(seq, [this, seq, done = std::move(done)](absl::Status s) {
      if (s.ok()) {
        uint64_t was = witness_.acked.load();
        while (was < seq && !witness_.acked.compare_exchange_weak(was, seq)) {
        }
      }
      done(std::move(s));
    });
  }
  uint64_t Cut() override { return inner_->Cut(); }
  absl::Status WriteSnapshot(const LedgerSnapshot& snapshot) override {
    return inner_->WriteSnapshot(snapshot);
  }
  StoreStats Stats() const override { return inner_->Stats(); }

 private:
  const std::unique_ptr<FileStore> inner_;
  Witness& witness_;
};

// What the clients (agents, operators) were told about a VM or a node.
struct VmModel {
  bool exists = false;
  std::string node;
  Resources permit;
  // An operation on it failed in the crash: its outcome is unknown until the next recovery.
  bool unknown = false;
};
struct NodeModel {
  bool exists = false;
  bool unknown = false;
  // The test once set its total below what it had reserved.
  bool lowered = false;
};

struct Report {
  int crashes = 0;
  int operations = 0;
  int answered = 0;
  uint64_t records = 0;
  std::vector<std::string> violations;
};

class CrashRun {
 public:
  CrashRun(uint64_t seed, bool sync) : rng_(seed), fs_(seed), sync_(sync) {}

  Report Run(int crashes) {
    CHECK(fs_.CreateDir(kDir).ok());
    if (!Open()) return report_;
    Check();
    while (report_.crashes < crashes && report_.violations.empty()) {
      ChooseCrashPoint();
      for (int step = 0; step < 400 && !fs_.crashed(); ++step) Step();
      // Not reached: the process dies where it is.
      if (!fs_.crashed()) fs_.CrashAt(fs_.operations() + 1);
      ledger_.reset();
      const int kind = Pick(0, 2);
      fs_.Restart(kind == 0   ? Crash::kProcess
                  : kind == 1 ? Crash::kPowerLoss
                              : Crash::kTornPowerLoss);
      ++report_.crashes;
      if (!Open()) break;
      Check();
    }
    ledger_.reset();
    {
      absl::MutexLock l(&witness_.mu);
      report_.records = witness_.records.empty() ? 0 : witness_.records.rbegin()->first;
    }
    return report_;
  }

 private:
  int64_t Pick(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  void Violation(std::string what) {
    report_.violations.push_back(absl::StrCat("after crash ", report_.crashes, ": ", what));
  }
  LedgerOptions Options() {
    return {
        .placement = {.randomize = false}, .clock = &clock_, .recovery_grace = absl::Seconds(5)};
  }

  bool Open() {
    absl::StatusOr<std::unique_ptr<FileStore>> files =
        FileStore::Open({.dir = kDir,
                         .sync = sync_,
                         .reserve_bytes = 4096,
                         .retry_min = absl::Milliseconds(1),
                         .retry_max = absl::Milliseconds(5),
                         .fs = &fs_});
    if (!files.ok()) {
      Violation(absl::StrCat("the store does not open: ", files.status().ToString()));
      return false;
    }
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(Options(), std::make_unique<WitnessedStore>(*std::move(files), witness_));
    if (!ledger.ok()) {
      Violation(absl::StrCat("recovery fails: ", ledger.status().ToString()));
      return false;
    }
    ledger_ = *std::move(ledger);
    return true;
  }

  // Where this round's process dies: right after the start (before recovery's syncs are covered
  // by later ones), soon, or later.
  void ChooseCrashPoint() {
    const int64_t r = Pick(0, 9);
    const int64_t ahead = r == 0 ? Pick(1, 4) : r < 5 ? Pick(1, 80) : Pick(1, 400);
    fs_.CrashAt(fs_.operations() + ahead);
  }

  // The checks after a recovery; then the models follow what the ledger now holds (durable, since
  // recovery synced it).
  void Check() {
    const uint64_t last = ledger_->store_stats()->durable_seq;
    const uint64_t acked = witness_.acked.load();
    if (last < acked) {
      Violation(absl::StrCat("records ", last + 1, "..", acked,
                             " were acknowledged durable but are lost (recovered up to ", last,
                             ")"));
    }
    if (last < recovered_) {
      Violation(absl::StrCat("records ", last + 1, "..", recovered_,
                             " were recovered (and served) before but are lost now"));
    }
    // The reference: the last reference state plus the records the test saw appended since.
    StoredState reference{.snapshot = base_, .records = {}, .last_seq = last};
    {
      absl::MutexLock l(&witness_.mu);
      for (uint64_t seq = recovered_ + 1; seq <= last; ++seq) {
        auto it = witness_.records.find(seq);
        if (it == witness_.records.end()) {
          Violation(absl::StrCat("recovered record ", seq, " was never appended"));
          return;
        }
        LedgerRecord r;
        CHECK(r.ParseFromString(it->second));
        reference.records.push_back(std::move(r));
      }
      // What a dead process appended after `last` is gone; the new one appends from there.
      witness_.records.erase(witness_.records.upper_bound(last), witness_.records.end());
    }
    auto memory = std::make_unique<MemoryStore>(reference);
    MemoryStore* memory_store = memory.get();
    absl::StatusOr<std::unique_ptr<Ledger>> rebuilt = Ledger::Open(Options(), std::move(memory));
    if (!rebuilt.ok()) {
      Violation(absl::StrCat("the reference does not rebuild: ", rebuilt.status().ToString()));
      return;
    }
    const std::vector<std::string> diff = internal::LedgerPeer::Diff(*ledger_, **rebuilt);
    if (!diff.empty()) {
      Violation(absl::StrCat("the recovered ledger is not the records appended 1..", last, ":\n  ",
                             absl::StrJoin(diff, "\n  ")));
    }
    CHECK((*rebuilt)->Snapshot().ok());
    base_ = memory_store->Contents().snapshot;
    recovered_ = last;
    witness_.acked = last;

    if (absl::Status s = ledger_->CheckInvariants(); !s.ok()) Violation(s.ToString());
    for (const NodeInfo& n : ledger_->ListNodes()) {
      if (n.reserved.AnyGreaterThan(n.total) && !nodes_[n.name].lowered) {
        Violation(absl::StrCat("node ", n.name, " reserves ", n.reserved.ToString(),
                               ", above its total ", n.total.ToString()));
      }
    }
    // Every answer the clients got stands.
    for (auto& [name, m] : vms_) {
      if (m.unknown) continue;
      absl::StatusOr<VmInfo> v = ledger_->GetVm(name);
      if (m.exists != v.ok()) {
        Violation(absl::StrCat(
            "VM ", name,
            (m.exists ? " was acknowledged but is gone" : " was released but is back")));
      } else if (m.exists && (v->permit != m.permit || v->node != m.node)) {
        Violation(absl::StrCat("VM ", name, ": acknowledged ", m.permit.ToString(), " on ", m.node,
                               ", recovered ", v->permit.ToString(), " on ", v->node));
      }
    }
    for (auto& [name, m] : nodes_) {
      if (!m.unknown && m.exists != ledger_->GetNode(name).ok()) {
        Violation(
            absl::StrCat("node ", name,
                         (m.exists ? " was registered but is gone" : " was removed but is back")));
      }
    }
    // From here on the recovered ledger is what the clients know.
    for (auto it = vms_.begin(); it != vms_.end();) {
      absl::StatusOr<VmInfo> v = ledger_->GetVm(it->first);
      if (!v.ok()) {
        it = vms_.erase(it);  // names are not reused
        continue;
      }
      it->second = VmModel{.exists = true, .node = v->node, .permit = v->permit};
      ++it;
    }
    for (auto& [name, m] : nodes_) {
      m.exists = ledger_->GetNode(name).ok();
      m.unknown = false;
    }
  }

  // An answer: on success the model takes it (through `apply`); a failure while the file layer
  // is dead leaves the outcome unknown; any other failure changed nothing.
  template <typename T, typename F>
  void Answer(const absl::StatusOr<T>& result, std::vector<VmModel*> vms,
              std::vector<NodeModel*> nodes, F apply) {
    ++report_.operations;
    if (result.ok()) {
      ++report_.answered;
      apply(*result);
    } else if (fs_.crashed()) {
      for (VmModel* m : vms) m->unknown = true;
      for (NodeModel* m : nodes) m->unknown = true;
    }
  }

  std::string RandomVm() {
    std::vector<std::string> live;
    for (const auto& [name, m] : vms_) {
      if (m.exists || m.unknown) live.push_back(name);
    }
    return live.empty() ? "" : live[Pick(0, live.size() - 1)];
  }
  std::string RandomNode() { return absl::StrCat("n", Pick(0, next_node_)); }

  void Step() {
    clock_.Advance(absl::Seconds(1));
    const int op = Pick(0, 99);
    if (next_node_ < 3 || op < 4) return Register();
    if (op < 40) return Ask();
    if (op < 50) return Place();
    if (op < 56) return Release();
    if (op < 68) return Migrations();
    if (op < 74) return Update();
    if (op < 78) return Cordon();
    if (op < 81) return Drain();
    if (op < 83) return Remove();
    if (op < 92) return Bounds();
    return Snapshot();
  }

  void Register() {
    const std::string name = absl::StrCat("n", next_node_ < 6 ? next_node_++ : Pick(0, 5));
    NodeModel& m = nodes_[name];
    const Resources total = kCu * Pick(8, 24);
    if (absl::StatusOr<NodeInfo> n = ledger_->GetNode(name); n.ok()) {
      if (n->reserved.AnyGreaterThan(total)) m.lowered = true;
    }
    Answer(ledger_->RegisterNode({.name = name,
                                  .total = total,
                                  .watermark = Pick(6, 10) / 10.0,
                                  .agent_address = name + ":1"}),
           {}, {&m}, [&](const NodeInfo&) { m.exists = true; });
  }

  void Ask() {
    const std::string name = RandomVm();
    if (name.empty()) return;
    absl::StatusOr<VmInfo> v = ledger_->GetVm(name);
    if (!v.ok()) return;
    VmModel& m = vms_[name];
    const PermitRequest r{
        .node = v->node,
        .vm = name,
        .compute_unit = v->compute_unit,
        .resources = v->compute_unit * Pick(v->bounds.min_cu, v->bounds.max_cu),
        .last_permit = m.exists && !m.unknown ? std::optional<Resources>(m.permit) : std::nullopt};
    Answer(ledger_->Request(r), {&m}, {}, [&](const Permit& p) {
      m.exists = true;
      m.node = r.node;
      // A migrating VM keeps its reservation; it is answered no more than it asked for.
      m.permit = p.migration ? v->permit : p.resources;
    });
  }

  void Place() {
    const std::string name = absl::StrCat("vm", next_vm_++);
    const uint32_t min = Pick(1, 2), max = min + Pick(0, 5);
    VmModel& m = vms_[name];
    Answer(ledger_->PlaceVm({.name = name,
                             .bounds = {min, max},
                             .compute_unit = kCu,
                             .initial = kCu * min,
                             .overcommit = {Pick(0, 1) ? 1000u : 1500u, 1000},
                             .migratable = Pick(0, 3) != 0},
                            Pick(0, 2) == 0 ? RandomNode() : ""),
           {&m}, {}, [&](const Placement& p) {
             m.exists = true;
             m.node = p.node;
             m.permit = p.permit;
           });
  }

  void Release() {
    const std::string name = RandomVm();
    if (name.empty()) return;
    VmModel& m = vms_[name];
    const absl::Status s = ledger_->ReleaseVm(name);
    Answer(s.ok() ? absl::StatusOr<bool>(true) : absl::StatusOr<bool>(s), {&m}, {},
           [&](bool) { m = VmModel{}; });
  }

  void Migrations() {
    absl::StatusOr<std::vector<MigrationOrder>> orders = ledger_->MigrationOrders(RandomNode());
    if (!orders.ok()) return;
    for (const MigrationOrder& o : *orders) {
      if (Pick(0, 2) == 0) continue;  // still under way
      const bool ok = Pick(0, 1) == 0;
      VmModel& m = vms_[o.vm];
      const absl::Status s = ledger_->EndMigration(o.id, o.vm, ok);
      Answer(s.ok() ? absl::StatusOr<bool>(true) : absl::StatusOr<bool>(s), {&m}, {}, [&](bool) {
        absl::StatusOr<VmInfo> v = ledger_->GetVm(o.vm);
        m = v.ok() ? VmModel{.exists = true, .node = v->node, .permit = v->permit} : VmModel{};
      });
      if (fs_.crashed()) return;
    }
  }

  // A new total (sometimes below what the node reserves: over capacity) or watermark.
  void Update() {
    const std::string name = RandomNode();
    absl::StatusOr<NodeInfo> n = ledger_->GetNode(name);
    if (!n.ok()) return;
    std::optional<Resources> total;
    std::optional<double> watermark;
    if (Pick(0, 1) == 0) {
      total = kCu * Pick(4, 24);
      if (n->reserved.AnyGreaterThan(*total)) nodes_[name].lowered = true;
    } else {
      watermark = Pick(5, 10) / 10.0;
    }
    Answer(ledger_->UpdateNode(name, total, watermark), {}, {}, [](const NodeInfo&) {});
  }

  void Cordon() {
    Answer(ledger_->CordonNode(RandomNode(), Pick(0, 1) == 0), {}, {}, [](const NodeInfo&) {});
  }

  void Drain() {
    Answer(ledger_->DrainNode(RandomNode()), {}, {}, [](const DrainProgress&) {});
  }

  void Remove() {
    const std::string name = RandomNode();
    absl::StatusOr<NodeInfo> n = ledger_->GetNode(name);
    if (!n.ok()) return;
    const bool force = Pick(0, 1) == 0;
    std::vector<VmModel*> touched;
    for (const VmInfo& v : ledger_->ListVms()) {
      if (v.node == name || (v.migration && v.migration->target_node == name)) {
        touched.push_back(&vms_[v.name]);
      }
    }
    NodeModel& m = nodes_[name];
    Answer(ledger_->RemoveNode(name, force), touched, {&m}, [&](const RemovedNode& r) {
      m.exists = false;
      for (const VmInfo& v : r.dropped_vms) vms_[v.name] = VmModel{};
    });
  }

  void Bounds() {
    const std::string name = RandomVm();
    if (name.empty()) return;
    const uint32_t min = Pick(1, 3), max = min + Pick(0, 5);
    VmModel& m = vms_[name];
    Answer(ledger_->UpdateVmBounds(name, {min, max}), {&m}, {}, [](const VmInfo&) {});
  }

  void Snapshot() {
    // Often the process dies in the middle of it, or of the log rotation it starts.
    if (Pick(0, 4) == 0) fs_.CrashAt(fs_.operations() + Pick(1, 12));
    (void)ledger_->Snapshot();
  }

  std::mt19937_64 rng_;
  FaultInjectionFileSystem fs_;
  const bool sync_;
  ManualClock clock_;
  Witness witness_;
  std::unique_ptr<Ledger> ledger_;
  // The reference state after the last recovery, and that recovery's last record.
  std::optional<LedgerSnapshot> base_;
  uint64_t recovered_ = 0;
  std::map<std::string, VmModel> vms_;
  std::map<std::string, NodeModel> nodes_;
  int next_node_ = 0, next_vm_ = 0;
  Report report_;
};

class Quiet : public ::testing::Environment {
 public:
  // Thousands of crashes, each with its store errors, truncations and migrations logged.
  void SetUp() override { FLAGS_minloglevel = 3; }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

TEST(CrashConsistencyTest, NoAcknowledgedRecordIsLostInThousandsOfCrashes) {
  constexpr int kCrashes = 1500;
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    const Report r = CrashRun(seed, /*sync=*/true).Run(kCrashes);
    EXPECT_TRUE(r.violations.empty()) << absl::StrJoin(r.violations, "\n");
    EXPECT_EQ(r.crashes, kCrashes);
    // The run did real work between crashes.
    EXPECT_GT(r.answered, 5 * kCrashes);
    EXPECT_GT(r.records, uint64_t{5 * kCrashes});
    std::printf("seed %d: %d crashes, %d operations (%d answered), %d records\n",
                static_cast<int>(seed), r.crashes, r.operations, r.answered,
                static_cast<int>(r.records));
  }
}

// The same checks find the loss when the store does not fdatasync the log before it answers.
TEST(CrashConsistencyTest, ALogThatIsNotSyncedBeforeAnsweringLosesAcknowledgedRecords) {
  for (uint64_t seed : {3, 4, 5}) {
    const Report r = CrashRun(seed, /*sync=*/false).Run(200);
    ASSERT_FALSE(r.violations.empty()) << "200 crashes without fdatasync lost nothing";
    // Lost acknowledged records, or a log whose unsynced middle was lost (recovery refuses it).
    const std::string& first = r.violations[0];
    EXPECT_TRUE(first.find("acknowledged durable but are lost") != std::string::npos ||
                first.find("recovery fails: DATA_LOSS") != std::string::npos)
        << first;
    std::printf("seed %d without fdatasync: %s\n", static_cast<int>(seed), first.c_str());
  }
}

}  // namespace
}  // namespace autoscale::ledger
