// Property tests: random operations against the ledger, every rule checked after every step.
//   - Sequential: requests, placements, releases, migrations and bad input in random order; each
//     answer is checked against the grant rules (decreases exact, increases in whole CUs and as
//     large as the node allows), the node never over its total, the full invariants regularly.
//   - Concurrent: agents on 4 threads (1,000,000 requests in all) share nodes while a migrator
//     moves VMs and a checker verifies the whole ledger; each agent checks its own answers.
//   - Concurrent with a store: the log (with a snapshot in the middle) rebuilds the same ledger.
#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "glog/logging.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

const Resources kCus[] = {{250, kGiB}, {500, 2 * kGiB}};
const uint32_t kFactors[] = {1000, 1250, 1500, 2000};

int64_t Pick(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// A random valid size of a VM: each resource a whole number of CUs within bounds.
Resources RandomSize(std::mt19937_64& rng, const Resources& cu, const Bounds& b) {
  return {cu.milli_cpu * Pick(rng, b.min_cu, b.max_cu),
          cu.memory_bytes * Pick(rng, b.min_cu, b.max_cu)};
}

PlaceVmRequest RandomVm(std::mt19937_64& rng, const std::string& name) {
  const Resources cu = kCus[Pick(rng, 0, 1)];
  const uint32_t min = Pick(rng, 1, 2), max = min + Pick(rng, 0, 6);
  return {.name = name,
          .bounds = {min, max},
          .compute_unit = cu,
          .initial = cu * min,
          .overcommit = {kFactors[Pick(rng, 0, 3)], kFactors[Pick(rng, 0, 3)]},
          .migratable = Pick(rng, 0, 3) != 0};
}

void AddNodes(Ledger& ledger, std::mt19937_64& rng, int n) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(ledger
                    .RegisterNode({.name = absl::StrCat("node", i),
                                   .total = {Pick(rng, 8, 32) * 250, Pick(rng, 8, 32) * kGiB},
                                   .watermark = Pick(rng, 6, 10) / 10.0,
                                   .agent_address = absl::StrCat("node", i, ":1")})
                    .ok());
  }
}

// The grant rules for one resource: `have` before, `want` asked, `got` granted; `free` is what
// the node had left afterwards.
void CheckGrant(const char* what, int64_t have, int64_t want, int64_t got, int64_t step,
                uint32_t factor, int64_t free_after, bool migrating) {
  if (migrating) {
    // Its reservation stays; it is answered no more than it asked for.
    EXPECT_EQ(got, std::min(have, want)) << what << ": a migrating VM is not resized";
    return;
  }
  if (want <= have) {
    EXPECT_EQ(got, want) << what << ": decreases apply at once";
    return;
  }
  ASSERT_GE(got, have) << what;
  ASSERT_LE(got, want) << what;
  EXPECT_EQ((got - have) % step, 0) << what << ": increases come in whole CUs";
  if (got < want) {
    // A partial grant: one more CU must not have fit.
    const int64_t more = NodeShare({got + step, got + step}, {factor, factor}).milli_cpu -
                         NodeShare({got, got}, {factor, factor}).milli_cpu;
    EXPECT_GT(more, free_after) << what << ": granted " << got << " of " << want
                                << " though the node had room for more";
  }
}

class Quiet : public ::testing::Environment {
 public:
  // Thousands of migrations would each log a line.
  void SetUp() override { FLAGS_minloglevel = 1; }
};
const auto* const kQuiet = ::testing::AddGlobalTestEnvironment(new Quiet);

TEST(LedgerPropertyTest, SequentialRandomOperationsKeepEveryRule) {
  std::mt19937_64 rng(42);
  ManualClock clock;
  Ledger ledger({.seed = 1, .clock = &clock});
  AddNodes(ledger, rng, 6);
  std::vector<std::string> names;
  int next_vm = 0, granted = 0, partial = 0, refused = 0, migrations = 0;
  for (int step = 0; step < 200000; ++step) {
    clock.Advance(absl::Milliseconds(10));
    const int op = Pick(rng, 0, 99);
    if (op < 6 || names.size() < 10) {
      const std::string name = absl::StrCat("vm", next_vm++);
      absl::StatusOr<Placement> p = ledger.PlaceVm(RandomVm(rng, name));
      if (p.ok()) {
        names.push_back(name);
      } else {
        ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
      }
    } else if (op < 9) {
      const size_t i = Pick(rng, 0, names.size() - 1);
      ASSERT_TRUE(ledger.ReleaseVm(names[i]).ok());
      names.erase(names.begin() + i);
    } else if (op < 13) {
      const std::string node = absl::StrCat("node", Pick(rng, 0, 5));
      absl::StatusOr<std::vector<MigrationOrder>> orders = ledger.MigrationOrders(node);
      ASSERT_TRUE(orders.ok()) << orders.status();
      for (const MigrationOrder& o : *orders) {
        EXPECT_EQ(o.source_node, node);
        if (Pick(rng, 0, 1) == 0) {
          ASSERT_TRUE(ledger.EndMigration(o.id, o.vm, Pick(rng, 0, 2) != 0).ok());
          ++migrations;
        }
      }
    } else {
      const std::string& name = names[Pick(rng, 0, names.size() - 1)];
      absl::StatusOr<VmInfo> found = ledger.GetVm(name);
      ASSERT_TRUE(found.ok()) << found.status();
      const VmInfo before = *found;
      Resources want = RandomSize(rng, before.compute_unit, before.bounds);
      const bool bad = Pick(rng, 0, 49) == 0;
      if (bad) want.milli_cpu += before.compute_unit.milli_cpu / 2;  // not whole CUs
      absl::StatusOr<Permit> p = ledger.Request({.node = before.node,
                                                 .vm = name,
                                                 .compute_unit = before.compute_unit,
                                                 .resources = want,
                                                 .last_permit = before.permit});
      const NodeInfo node = *ledger.GetNode(before.node);
      ASSERT_TRUE(node.reserved.FitsIn(node.total)) << node.name << " over its total";
      if (bad) {
        ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
        ++refused;
        continue;
      }
      ASSERT_TRUE(p.ok()) << p.status();
      const Resources free = node.total - node.reserved;
      const bool migrating = before.migration.has_value();
      CheckGrant("cpu", before.permit.milli_cpu, want.milli_cpu, p->resources.milli_cpu,
                 before.compute_unit.milli_cpu, before.overcommit.cpu_milli, free.milli_cpu,
                 migrating);
      CheckGrant("memory", before.permit.memory_bytes, want.memory_bytes, p->resources.memory_bytes,
                 before.compute_unit.memory_bytes, before.overcommit.memory_milli,
                 free.memory_bytes, migrating);
      if (p->resources == want) ++granted;
      if (want.AnyGreaterThan(p->resources)) ++partial;
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
    if (step % 1000 == 0) {
      ASSERT_TRUE(ledger.CheckInvariants().ok()) << ledger.CheckInvariants();
    }
  }
  ASSERT_TRUE(ledger.CheckInvariants().ok()) << ledger.CheckInvariants();
  // The run exercised every kind of answer.
  EXPECT_GT(granted, 1000);
  EXPECT_GT(partial, 1000);
  EXPECT_GT(refused, 100);
  EXPECT_GT(migrations, 100);
}

// A request through a VmHandle gets the answer a request by name gets, whatever happened since
// the handle was taken: two ledgers go through the same random operations (placements,
// releases, migrations, a node removed and registered again), one asked by name, the other
// through handles that go stale, and now and then through another VM's handle.
TEST(LedgerPropertyTest, HandlesGiveTheAnswersOfNames) {
  std::mt19937_64 rng(5);
  ManualClock clock;
  Ledger by_name({.seed = 1, .clock = &clock});
  Ledger by_handle({.seed = 1, .clock = &clock});
  std::mt19937_64 node_rng(6), node_rng2(6);
  AddNodes(by_name, node_rng, 5);
  AddNodes(by_handle, node_rng2, 5);
  std::map<std::string, VmHandle> handles;
  std::vector<std::string> names;
  int next_vm = 0, through_handle = 0, removed = 0;
  for (int step = 0; step < 60000; ++step) {
    clock.Advance(absl::Milliseconds(10));
    const int op = Pick(rng, 0, 99);
    if (op < 6 || names.size() < 10) {
      const PlaceVmRequest vm = RandomVm(rng, absl::StrCat("vm", next_vm++));
      absl::StatusOr<Placement> a = by_name.PlaceVm(vm), b = by_handle.PlaceVm(vm);
      ASSERT_EQ(a.status(), b.status());
      if (a.ok()) {
        ASSERT_EQ(a->node, b->node);
        names.push_back(vm.name);
      }
    } else if (op < 8) {
      const size_t i = Pick(rng, 0, names.size() - 1);
      ASSERT_TRUE(by_name.ReleaseVm(names[i]).ok());
      ASSERT_TRUE(by_handle.ReleaseVm(names[i]).ok());
      names.erase(names.begin() + i);
    } else if (op < 12) {
      const std::string node = absl::StrCat("node", Pick(rng, 0, 4));
      absl::StatusOr<std::vector<MigrationOrder>> a = by_name.MigrationOrders(node);
      absl::StatusOr<std::vector<MigrationOrder>> b = by_handle.MigrationOrders(node);
      ASSERT_EQ(a.status(), b.status());
      if (!a.ok()) continue;
      ASSERT_EQ(*a, *b);
      for (const MigrationOrder& o : *a) {
        const bool ok = Pick(rng, 0, 2) != 0;
        ASSERT_EQ(by_name.EndMigration(o.id, o.vm, ok), by_handle.EndMigration(o.id, o.vm, ok));
      }
    } else if (op == 12 && step % 7 == 0) {
      // A node goes, its VMs with it, and comes back empty under the same name.
      const std::string node = absl::StrCat("node", Pick(rng, 0, 4));
      absl::StatusOr<RemovedNode> a = by_name.RemoveNode(node, /*force=*/true);
      absl::StatusOr<RemovedNode> b = by_handle.RemoveNode(node, /*force=*/true);
      ASSERT_EQ(a.status(), b.status());
      for (const VmInfo& v : a->dropped_vms) {
        names.erase(std::find(names.begin(), names.end(), v.name));
      }
      const NodeSpec spec{.name = node, .total = {8000, 32 * kGiB}};
      ASSERT_EQ(by_name.RegisterNode(spec).status(), by_handle.RegisterNode(spec).status());
      ++removed;
    } else {
      const std::string& name = names[Pick(rng, 0, names.size() - 1)];
      const VmInfo before = *by_name.GetVm(name);
      // Now and then the request names a node the VM is not on.
      const std::string node =
          Pick(rng, 0, 29) == 0 ? absl::StrCat("node", Pick(rng, 0, 4)) : before.node;
      const PermitRequest request{.node = node,
                                  .vm = name,
                                  .compute_unit = before.compute_unit,
                                  .resources = RandomSize(rng, before.compute_unit, before.bounds),
                                  .last_permit = before.permit};
      // Mostly the VM's own handle, sometimes another VM's.
      VmHandle& handle =
          handles[Pick(rng, 0, 19) == 0 ? names[Pick(rng, 0, names.size() - 1)] : name];
      absl::StatusOr<Permit> a = by_name.Request(request);
      // The hint, on handles empty, stale or another VM's, changes no answer.
      handle.Prefetch();
      absl::StatusOr<Permit> b = by_handle.Request(request, handle);
      ASSERT_EQ(a.status(), b.status()) << name << " step " << step;
      if (a.ok()) {
        ASSERT_EQ(a->resources, b->resources) << name << " step " << step;
        ASSERT_EQ(a->migration, b->migration) << name << " step " << step;
      }
      ++through_handle;
    }
  }
  EXPECT_EQ(by_name.ListVms(), by_handle.ListVms());
  EXPECT_EQ(by_name.ListNodes(), by_handle.ListNodes());
  EXPECT_TRUE(by_handle.CheckInvariants().ok()) << by_handle.CheckInvariants();
  EXPECT_GT(through_handle, 40000);
  EXPECT_GT(removed, 10);
}

// Agents on several threads, each owning some VMs, on shared nodes; a migrator moves VMs; a
// checker verifies the whole ledger all along. Returns the number of requests made.
int64_t RunConcurrently(Ledger& ledger, int threads, int requests_per_thread, uint64_t seed,
                        const std::function<void()>& middle = nullptr) {
  std::mt19937_64 rng(seed);
  AddNodes(ledger, rng, 8);
  std::vector<std::vector<PlaceVmRequest>> owned(threads);
  for (int i = 0; i < threads * 12; ++i) {
    PlaceVmRequest s = RandomVm(rng, absl::StrCat("vm", i));
    if (ledger.PlaceVm(s).ok()) owned[i % threads].push_back(s);
  }
  std::atomic<bool> done{false};
  std::atomic<int64_t> requests{0}, moved{0};
  std::thread checker([&] {
    while (!done.load()) {
      absl::Status s = ledger.CheckInvariants();
      if (!s.ok()) {
        ADD_FAILURE() << s;
        return;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  std::thread migrator([&] {
    std::mt19937_64 r(seed + 1);
    while (!done.load()) {
      absl::StatusOr<std::vector<MigrationOrder>> orders =
          ledger.MigrationOrders(absl::StrCat("node", Pick(r, 0, 7)));
      if (!orders.ok()) {
        ADD_FAILURE() << orders.status();
        return;
      }
      for (const MigrationOrder& o : *orders) {
        if (ledger.EndMigration(o.id, o.vm, Pick(r, 0, 3) != 0).ok()) ++moved;
      }
      absl::SleepFor(absl::Microseconds(300));
    }
  });
  std::vector<std::thread> agents;
  for (int t = 0; t < threads; ++t) {
    agents.emplace_back([&, t] {
      std::mt19937_64 r(seed + 100 + t);
      const std::vector<PlaceVmRequest>& vms = owned[t];
      if (vms.empty()) return;
      // What this agent knows: each VM's node and permit (only this agent resizes them).
      std::map<std::string, std::pair<std::string, Resources>> known;
      for (const VmInfo& v : ledger.ListVms()) known[v.name] = {v.node, v.permit};
      // Every other request goes through the VM's handle, while the migrator moves VMs.
      std::map<std::string, VmHandle> handles;
      for (int i = 0; i < requests_per_thread; ++i) {
        if (middle && t == 0 && i == requests_per_thread / 2) middle();
        const PlaceVmRequest& s = vms[Pick(r, 0, vms.size() - 1)];
        auto& [node, have] = known[s.name];
        const Resources want = RandomSize(r, s.compute_unit, s.bounds);
        const PermitRequest request{
            .node = node, .vm = s.name, .compute_unit = s.compute_unit, .resources = want};
        absl::StatusOr<Permit> p =
            i % 2 == 0 ? ledger.Request(request) : ledger.Request(request, handles[s.name]);
        ++requests;
        if (p.status().code() == absl::StatusCode::kNotFound) {
          // Migrated meanwhile: find its new node.
          node = ledger.GetVm(s.name)->node;
          continue;
        }
        if (!p.ok()) {
          ADD_FAILURE() << p.status();
          return;
        }
        const Resources got = p->resources;
        const bool migrating = p->migration.has_value();
        for (int k = 0; k < 2; ++k) {
          const int64_t h = k ? have.memory_bytes : have.milli_cpu;
          const int64_t w = k ? want.memory_bytes : want.milli_cpu;
          const int64_t g = k ? got.memory_bytes : got.milli_cpu;
          const int64_t step = k ? s.compute_unit.memory_bytes : s.compute_unit.milli_cpu;
          bool ok =
              migrating ? g <= w : (w <= h ? g == w : g >= h && g <= w && (g - h) % step == 0);
          if (!ok) {
            ADD_FAILURE() << s.name << " resource " << k << ": had " << h << ", asked " << w
                          << ", got " << g << (migrating ? " while migrating" : "");
            return;
          }
        }
        have = got;
        absl::StatusOr<NodeInfo> n = ledger.GetNode(node);
        if (!n.ok() || !n->reserved.FitsIn(n->total)) {
          ADD_FAILURE() << "node " << node << " over its total: " << n->reserved.ToString();
          return;
        }
      }
    });
  }
  for (auto& a : agents) a.join();
  done = true;
  checker.join();
  migrator.join();
  EXPECT_TRUE(ledger.CheckInvariants().ok()) << ledger.CheckInvariants();
  EXPECT_GT(moved.load(), 0);
  return requests.load();
}

TEST(LedgerPropertyTest, AMillionConcurrentRequestsKeepEveryRule) {
  Ledger ledger({.seed = 2});
  const int64_t n = RunConcurrently(ledger, 4, 250000, 7);
  EXPECT_EQ(n, 1000000);
}

TEST(LedgerPropertyTest, TheLogRebuildsTheSameLedger) {
  auto store = std::make_unique<MemoryStore>();
  MemoryStore* log = store.get();
  std::unique_ptr<Ledger> ledger = *Ledger::Open({.seed = 3}, std::move(store));
  RunConcurrently(*ledger, 3, 20000, 11, [&] { ASSERT_TRUE(ledger->Snapshot().ok()); });
  ASSERT_TRUE(log->Contents().snapshot.has_value());
  absl::StatusOr<std::unique_ptr<Ledger>> rebuilt =
      Ledger::Open({}, std::make_unique<MemoryStore>(log->Contents()));
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_EQ((*rebuilt)->ListVms(), ledger->ListVms());
  std::vector<NodeInfo> nodes = (*rebuilt)->ListNodes();
  for (NodeInfo& n : nodes) n.awaiting_agent = false;
  EXPECT_EQ(nodes, ledger->ListNodes());
  EXPECT_TRUE((*rebuilt)->CheckInvariants().ok());
}

}  // namespace
}  // namespace autoscale::ledger
