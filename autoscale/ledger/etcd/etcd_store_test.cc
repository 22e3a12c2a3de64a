// EtcdStore and EtcdFollower against a real 3-member etcd cluster (autoscale/testing): a ledger
// rebuilt from etcd equals the live one; group commit; snapshots in chunks that compact the log;
// fencing (a writer whose key is gone writes nothing, ever); a retried batch that had landed; a
// missing batch named as data loss; a follower that keeps up and hands over a warm copy; writes
// that ride out the loss of etcd's leader, and changes refused (records kept) while quorum is lost.
#include "autoscale/ledger/etcd/etcd_store.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/etcd/follower.h"
#include "autoscale/ledger/etcd/layout.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/testing/etcd_cluster.h"
#include "gtest/gtest.h"

namespace autoscale::ledger::etcd {
namespace {

constexpr core::Resources kCu{250, kGiB};

class EtcdStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::EtcdMissing().empty()) return;
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> c =
        testing::EtcdCluster::Start({.members = 3});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    AUTOSCALE_REQUIRE_ETCD();
    ASSERT_NE(cluster_, nullptr);
    // A case that failed half-way may have left members down: every case starts with all three.
    for (int m = 0; m < 3; ++m) {
      if (!cluster_->Running(m)) {
        ASSERT_TRUE(cluster_->Restart(m).ok()) << cluster_->LogTail(m);
      }
    }
    absl::StatusOr<std::shared_ptr<EtcdClient>> c = EtcdClient::Connect(cluster_->ClientOptions());
    ASSERT_TRUE(c.ok()) << c.status();
    etcd_ = *c;
    prefix_ =
        absl::StrCat("/test/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // A key standing for a leader's election key: writes are fenced on it.
  Fence MakeFence(const std::string& name) {
    etcdserverpb::PutRequest put;
    put.set_key(prefix_ + "/election/" + name);
    put.set_value(name);
    absl::StatusOr<etcdserverpb::PutResponse> r = etcd_->Put(put);
    EXPECT_TRUE(r.ok()) << r.status();
    return {.key = put.key(), .create_revision = r.ok() ? r->header().revision() : 0};
  }

  void Delete(const std::string& key) {
    etcdserverpb::DeleteRangeRequest del;
    del.set_key(key);
    ASSERT_TRUE(etcd_->DeleteRange(del).ok());
  }

  std::unique_ptr<EtcdStore> Open(const Fence& fence, std::optional<EtcdLedger> warm = {},
                                  size_t chunk = size_t{1} << 20,
                                  absl::Duration refuse_after = absl::Seconds(2)) {
    absl::StatusOr<std::unique_ptr<EtcdStore>> s = EtcdStore::Open({.client = etcd_,
                                                                    .prefix = prefix_,
                                                                    .fence = fence,
                                                                    .snapshot_chunk_bytes = chunk,
                                                                    .refuse_after = refuse_after},
                                                                   std::move(warm));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  std::unique_ptr<Ledger> OpenLedger(std::unique_ptr<LedgerStore> store) {
    absl::StatusOr<std::unique_ptr<Ledger>> l =
        Ledger::Open({.placement = {.randomize = false}}, std::move(store));
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *std::move(l) : nullptr;
  }

  // Two nodes, `vms` VMs, and a request per VM.
  static void Fill(Ledger& ledger, int vms) {
    ASSERT_TRUE(ledger.RegisterNode({.name = "n1", .total = kCu * 64}).ok());
    ASSERT_TRUE(ledger.RegisterNode({.name = "n2", .total = kCu * 64}).ok());
    for (int i = 0; i < vms; ++i) {
      const std::string vm = absl::StrCat("vm", i);
      absl::StatusOr<Placement> p = ledger.PlaceVm(
          {.name = vm, .bounds = {1, 4}, .compute_unit = kCu, .initial = kCu}, i % 2 ? "n2" : "n1");
      ASSERT_TRUE(p.ok()) << p.status();
      absl::StatusOr<Permit> permit = ledger.Request(
          {.node = p->node, .vm = vm, .compute_unit = kCu, .resources = kCu * (1 + i % 4)});
      ASSERT_TRUE(permit.ok()) << permit.status();
    }
  }

  static LedgerRecord Record(const std::string& node) {
    LedgerRecord r;
    r.mutable_node_registered()->set_name(node);
    r.mutable_node_registered()->mutable_total()->set_milli_cpu(1000);
    r.mutable_node_registered()->mutable_total()->set_memory_bytes(kGiB);
    r.mutable_node_registered()->set_watermark(0.9);
    return r;
  }

  static absl::Status Durable(LedgerStore& store, uint64_t seq) {
    absl::Notification done;
    absl::Status status;
    store.WhenDurable(seq, [&](absl::Status s) {
      status = s;
      done.Notify();
    });
    done.WaitForNotification();
    return status;
  }

  std::vector<std::string> LogKeys() {
    Keys keys(prefix_);
    int64_t revision = 0;
    absl::StatusOr<std::vector<etcdserverpb::KeyValue>> kvs =
        RangeAll(*etcd_, keys.LogPrefix(), PrefixEnd(keys.LogPrefix()), &revision);
    EXPECT_TRUE(kvs.ok()) << kvs.status();
    std::vector<std::string> out;
    if (kvs.ok()) {
      for (const auto& kv : *kvs) out.push_back(kv.key());
    }
    return out;
  }

  static testing::EtcdCluster* cluster_;
  std::shared_ptr<EtcdClient> etcd_;
  std::string prefix_;
};

testing::EtcdCluster* EtcdStoreTest::cluster_ = nullptr;

TEST_F(EtcdStoreTest, ALedgerRebuiltFromEtcdEqualsTheLiveOne) {
  const Fence fence = MakeFence("a");
  std::unique_ptr<Ledger> live = OpenLedger(Open(fence));
  ASSERT_NE(live, nullptr);
  ASSERT_NO_FATAL_FAILURE(Fill(*live, 20));
  ASSERT_TRUE(live->ReleaseVm("vm3").ok());
  const std::vector<VmInfo> vms = live->ListVms();
  const std::vector<NodeInfo> nodes = live->ListNodes();
  live.reset();

  std::unique_ptr<Ledger> again = OpenLedger(Open(fence));
  ASSERT_NE(again, nullptr);
  // Two nodes, 20 placements, 15 resizes (a request for 1 CU changes nothing), a release.
  EXPECT_EQ(again->recovery().records_replayed, 2u + 20 + 15 + 1);
  std::vector<VmInfo> got = again->ListVms();
  ASSERT_EQ(got.size(), vms.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, vms[i].name);
    EXPECT_EQ(got[i].permit, vms[i].permit) << got[i].name;
    EXPECT_EQ(got[i].node, vms[i].node) << got[i].name;
  }
  std::vector<NodeInfo> got_nodes = again->ListNodes();
  ASSERT_EQ(got_nodes.size(), nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) EXPECT_EQ(got_nodes[i].reserved, nodes[i].reserved);
  EXPECT_TRUE(again->CheckInvariants().ok());
}

TEST_F(EtcdStoreTest, ConcurrentRecordsShareTransactions) {
  std::unique_ptr<EtcdStore> store = Open(MakeFence("a"));
  ASSERT_TRUE(store->Recover().ok());
  constexpr int kThreads = 8, kEach = 150;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!Durable(*store, store->Append(Record(absl::StrCat("n", t, "-", i)))).ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  const StoreStats stats = store->Stats();
  EXPECT_EQ(stats.durable_seq, uint64_t{kThreads * kEach});
  // Threads waiting at once share a transaction (the figure is in bench/RESULTS.md).
  EXPECT_LT(stats.fsyncs, uint64_t{kThreads * kEach});
  absl::StatusOr<EtcdLedger> read = ReadLedger(*etcd_, Keys(prefix_));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->state.records.size(), size_t{kThreads * kEach});
  EXPECT_EQ(read->state.last_seq, uint64_t{kThreads * kEach});
}

TEST_F(EtcdStoreTest, ASnapshotInChunksReplacesTheLogItCovers) {
  const Fence fence = MakeFence("a");
  // 200-byte chunks: the snapshot takes many.
  std::unique_ptr<Ledger> live = OpenLedger(Open(fence, {}, /*chunk=*/200));
  ASSERT_NE(live, nullptr);
  ASSERT_NO_FATAL_FAILURE(Fill(*live, 30));
  EXPECT_GT(LogKeys().size(), 0u);
  ASSERT_TRUE(live->Snapshot().ok());
  EXPECT_TRUE(LogKeys().empty()) << "the snapshot covers every batch";
  ASSERT_TRUE(live->RegisterNode({.name = "n3", .total = kCu * 8}).ok());
  EXPECT_EQ(LogKeys().size(), 1u);
  ASSERT_TRUE(live->Snapshot().ok());  // a second one replaces the first one's chunks
  const uint64_t snapshot_seq = live->store_stats()->durable_seq;
  ASSERT_TRUE(live->ReleaseVm("vm0").ok());
  const std::vector<VmInfo> vms = live->ListVms();
  live.reset();

  std::unique_ptr<Ledger> again = OpenLedger(Open(fence));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->recovery().records_replayed, 1u);
  EXPECT_NE(again->recovery().snapshot_file.find("/ledger/snapshot"), std::string::npos);
  EXPECT_EQ(again->ListVms().size(), vms.size());
  EXPECT_EQ(again->ListNodes().size(), 3u);
  int64_t revision = 0;
  Keys keys(prefix_);
  absl::StatusOr<std::vector<etcdserverpb::KeyValue>> chunks =
      RangeAll(*etcd_, keys.SnapshotPrefix(), PrefixEnd(keys.SnapshotPrefix()), &revision);
  ASSERT_TRUE(chunks.ok());
  for (const auto& kv : *chunks) {
    EXPECT_EQ(kv.key().rfind(keys.SnapshotChunks(snapshot_seq), 0), 0u)
        << "a chunk of an older snapshot is left: " << kv.key();
  }
}

TEST_F(EtcdStoreTest, AWriterWhoseKeyIsGoneWritesNothing) {
  const Fence old_leader = MakeFence("old");
  std::unique_ptr<EtcdStore> old_store = Open(old_leader);
  ASSERT_TRUE(old_store->Recover().ok());
  ASSERT_TRUE(Durable(*old_store, old_store->Append(Record("n1"))).ok());

  // Its lease expired: the key is gone. A new leader takes over.
  Delete(old_leader.key);
  const Fence new_leader = MakeFence("new");
  std::unique_ptr<EtcdStore> new_store = Open(new_leader);
  absl::StatusOr<StoredState> state = new_store->Recover();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->last_seq, 1u);

  // The old one still believes it leads. Its next record is refused by etcd itself.
  const absl::Status refused = Durable(*old_store, old_store->Append(Record("n2")));
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_NE(refused.message().find("no longer the leader"), absl::string_view::npos) << refused;
  EXPECT_FALSE(old_store->Stats().error.ok());
  EXPECT_FALSE(Durable(*old_store, old_store->Append(Record("n3"))).ok()) << "it stays stopped";

  ASSERT_TRUE(Durable(*new_store, new_store->Append(Record("n4"))).ok());
  absl::StatusOr<EtcdLedger> read = ReadLedger(*etcd_, Keys(prefix_));
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->state.records.size(), 2u);
  EXPECT_EQ(read->state.records[1].node_registered().name(), "n4");
  // Even a key of the same name made again (another term) is not the old writer's.
  etcdserverpb::PutRequest again;
  again.set_key(old_leader.key);
  ASSERT_TRUE(etcd_->Put(again).ok());
  std::unique_ptr<EtcdStore> stale = Open(old_leader);
  ASSERT_TRUE(stale->Recover().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(Durable(*stale, stale->Append(Record("n5")))));
}

TEST_F(EtcdStoreTest, ARetriedBatchThatLandedBeforeIsDurableAndAStrangeOneIsDataLoss) {
  const Fence fence = MakeFence("a");
  // The first attempt of batch 1 landed, but its answer was lost.
  LedgerBatch landed;
  landed.set_first_seq(1);
  landed.add_records(Record("n1").SerializeAsString());
  landed.set_writer(fence.key);
  etcdserverpb::PutRequest put;
  put.set_key(Keys(prefix_).Log(1));
  put.set_value(landed.SerializeAsString());
  ASSERT_TRUE(etcd_->Put(put).ok());
  // Recovery would read it: open with the state before it.
  std::unique_ptr<EtcdStore> store = Open(fence, EtcdLedger{});
  ASSERT_TRUE(store->Recover().ok());
  EXPECT_EQ(store->Stats().durable_seq, 1u) << "the catch-up read the batch";

  // A batch key that holds something else than what this writer sends.
  LedgerBatch other;
  other.set_first_seq(2);
  other.add_records(Record("someone else").SerializeAsString());
  put.set_key(Keys(prefix_).Log(2));
  put.set_value(other.SerializeAsString());
  ASSERT_TRUE(etcd_->Put(put).ok());
  const absl::Status s = Durable(*store, store->Append(Record("n2")));
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find(Keys(prefix_).Log(2)), absl::string_view::npos) << s;
}

TEST_F(EtcdStoreTest, AMissingBatchIsDataLossNamingTheKey) {
  std::unique_ptr<EtcdStore> store = Open(MakeFence("a"));
  ASSERT_TRUE(store->Recover().ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Durable(*store, store->Append(Record(absl::StrCat("n", i)))).ok());
  }
  ASSERT_EQ(LogKeys().size(), 3u);
  Delete(Keys(prefix_).Log(2));
  absl::StatusOr<EtcdLedger> read = ReadLedger(*etcd_, Keys(prefix_));
  ASSERT_FALSE(read.ok());
  EXPECT_TRUE(absl::IsDataLoss(read.status())) << read.status();
  EXPECT_NE(read.status().message().find(Keys(prefix_).Log(3)), absl::string_view::npos)
      << read.status();
  EXPECT_NE(read.status().message().find("missing"), absl::string_view::npos) << read.status();
}

TEST_F(EtcdStoreTest, AFollowerKeepsUpAndHandsOverAWarmCopy) {
  const Fence fence = MakeFence("a");
  std::unique_ptr<EtcdFollower> follower = EtcdFollower::Start(etcd_, Keys(prefix_));
  std::unique_ptr<Ledger> live = OpenLedger(Open(fence));
  ASSERT_NE(live, nullptr);
  ASSERT_NO_FATAL_FAILURE(Fill(*live, 10));
  ASSERT_TRUE(live->Snapshot().ok());
  ASSERT_TRUE(live->ReleaseVm("vm1").ok());
  ASSERT_TRUE(live->ReleaseVm("vm2").ok());
  const uint64_t last = live->store_stats()->durable_seq;

  auto caught_up = [&] {
    std::optional<EtcdLedger> c = follower->Current();
    return c.has_value() && c->state.last_seq == last;
  };
  for (absl::Time end = absl::Now() + absl::Seconds(10); !caught_up() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(caught_up()) << follower->status();
  std::optional<EtcdLedger> warm = follower->Current();
  ASSERT_TRUE(warm->state.snapshot.has_value());
  EXPECT_EQ(warm->state.records.size(), 2u);
  EXPECT_EQ(follower->reads(), 1) << "followed by watching, not by reading again";

  // More is written after the copy was taken; the new leader's store catches up.
  ASSERT_TRUE(live->ReleaseVm("vm3").ok());
  const std::vector<VmInfo> vms = live->ListVms();
  live.reset();
  std::unique_ptr<Ledger> warm_ledger = OpenLedger(Open(fence, std::move(warm)));
  std::unique_ptr<Ledger> cold_ledger = OpenLedger(Open(fence));
  ASSERT_NE(warm_ledger, nullptr);
  ASSERT_NE(cold_ledger, nullptr);
  EXPECT_EQ(warm_ledger->ListVms().size(), vms.size());
  EXPECT_EQ(warm_ledger->ListVms(), cold_ledger->ListVms());
  EXPECT_EQ(warm_ledger->recovery().records_replayed, 3u);
  EXPECT_EQ(cold_ledger->recovery().records_replayed, 3u);
  EXPECT_EQ(warm_ledger->ListNodes(), cold_ledger->ListNodes());
}

// etcd's raft leader dies: the others need an election (at least one election timeout, longer on a
// loaded machine) before they commit again. The store rides it out: nothing is refused, every
// record lands in order. (refuse_after is generous here so that a slow election cannot fail the
// case; the default is sized for an unloaded cluster.)
TEST_F(EtcdStoreTest, WritesRideOutTheLossOfEtcdsLeader) {
  std::unique_ptr<EtcdStore> store =
      Open(MakeFence("a"), {}, size_t{1} << 20, /*refuse_after=*/absl::Seconds(60));
  ASSERT_TRUE(store->Recover().ok());
  ASSERT_TRUE(Durable(*store, store->Append(Record("n0"))).ok());
  absl::StatusOr<int> leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  cluster_->Kill(*leader);
  for (int i = 1; i <= 20; ++i) {
    const absl::Status s = Durable(*store, store->Append(Record(absl::StrCat("n", i))));
    ASSERT_TRUE(s.ok()) << s;
  }
  EXPECT_TRUE(store->Stats().error.ok()) << store->Stats().error;
  ASSERT_TRUE(cluster_->Restart(*leader).ok()) << cluster_->LogTail(*leader);
  ASSERT_TRUE(Durable(*store, store->Append(Record("n21"))).ok());
  EXPECT_EQ(store->Stats().durable_seq, 22u);
}

// store.h's contract for a store that cannot write: it refuses changes and answers waiters at
// once instead of letting them hang, keeps the records in order, and writes them once etcd is
// back, without a restart.
TEST_F(EtcdStoreTest, WithoutQuorumChangesAreRefusedAndRecordsLandOnceItIsBack) {
  std::unique_ptr<EtcdStore> store =
      Open(MakeFence("a"), {}, size_t{1} << 20, /*refuse_after=*/absl::Milliseconds(300));
  ASSERT_TRUE(store->Recover().ok());
  ASSERT_TRUE(Durable(*store, store->Append(Record("n0"))).ok());
  // Whatever happens below, the shared cluster gets its members back.
  struct Restore {
    testing::EtcdCluster* cluster;
    ~Restore() {
      for (int m = 1; m <= 2; ++m) {
        if (!cluster->Running(m)) {
          EXPECT_TRUE(cluster->Restart(m).ok()) << cluster->LogTail(m);
        }
      }
    }
  } restore{cluster_};
  cluster_->Kill(1);
  cluster_->Kill(2);

  const uint64_t first = store->Append(Record("n1"));
  const absl::Status refused = Durable(*store, first);
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_NE(refused.message().find("retrying"), absl::string_view::npos) << refused;
  const absl::Status writable = store->Writable(/*growth=*/false);
  EXPECT_TRUE(absl::IsUnavailable(writable)) << writable;
  const StoreStats stats = store->Stats();
  EXPECT_TRUE(absl::IsUnavailable(stats.error)) << stats.error;
  EXPECT_GT(stats.write_errors, 0u);
  EXPECT_TRUE(store->stopped().ok()) << "retrying is not stopping: " << store->stopped();
  // A waiter arriving meanwhile is answered before WhenDurable returns.
  const uint64_t second = store->Append(Record("n2"));
  bool answered = false;
  store->WhenDurable(second, [&](absl::Status s) {
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    answered = true;
  });
  EXPECT_TRUE(answered);

  ASSERT_TRUE(cluster_->Restart(1).ok()) << cluster_->LogTail(1);
  ASSERT_TRUE(cluster_->Restart(2).ok()) << cluster_->LogTail(2);
  // Without a restart of the store: a retry lands, and what was kept is durable, in order.
  absl::Status now = store->Writable(/*growth=*/true);
  for (absl::Time end = absl::Now() + absl::Seconds(30); !now.ok() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(50));
    now = store->Writable(/*growth=*/true);
  }
  ASSERT_TRUE(now.ok()) << now;
  ASSERT_TRUE(Durable(*store, store->Append(Record("n3"))).ok());
  EXPECT_TRUE(store->Stats().error.ok());
  absl::StatusOr<EtcdLedger> read = ReadLedger(*etcd_, Keys(prefix_));
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->state.records.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(read->state.records[i].node_registered().name(), absl::StrCat("n", i));
  }
  EXPECT_LE(first, read->state.last_seq);
}

}  // namespace
}  // namespace autoscale::ledger::etcd
