#include "autoscale/ledger/file_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

namespace fs = std::filesystem;
const Resources kCu{250, kGiB};

std::string NewDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  fs::remove_all(dir);
  return dir;
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

LedgerRecord Released(const std::string& vm) {
  LedgerRecord r;
  r.set_vm_released(vm);
  return r;
}

absl::Status Durable(LedgerStore& store, uint64_t seq) {
  absl::Notification n;
  absl::Status status;
  store.WhenDurable(seq, [&](absl::Status s) {
    status = s;
    n.Notify();
  });
  n.WaitForNotification();
  return status;
}

TEST(FileStoreTest, RecordsSurviveReopening) {
  const std::string dir = NewDir("reopen");
  {
    auto store = *FileStore::Open({.dir = dir});
    absl::StatusOr<StoredState> s = store->Recover();
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(s->records.empty());
    EXPECT_FALSE(s->snapshot.has_value());
    EXPECT_EQ(store->Append(Released("a")), 1u);
    EXPECT_EQ(store->Append(Released("b")), 2u);
    ASSERT_TRUE(Durable(*store, 2).ok());
  }
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->records.size(), 2u);
  EXPECT_EQ(s->records[1].vm_released(), "b");
  EXPECT_EQ(s->last_seq, 2u);
  EXPECT_TRUE(s->info.truncated_file.empty());
  EXPECT_EQ(store->Append(Released("c")), 3u);
}

TEST(FileStoreTest, ADirectoryIsUsedByOneStoreAtATime) {
  const std::string dir = NewDir("lock");
  auto first = FileStore::Open({.dir = dir});
  ASSERT_TRUE(first.ok());
  auto second = FileStore::Open({.dir = dir});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
}

TEST(FileStoreTest, ConcurrentAppendsShareFsyncs) {
  const std::string dir = NewDir("group");
  auto store = *FileStore::Open({.dir = dir});
  ASSERT_TRUE(store->Recover().ok());
  constexpr int kThreads = 8, kEach = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const uint64_t seq = store->Append(Released("vm" + std::to_string(t)));
        if (!Durable(*store, seq).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const StoreStats stats = store->Stats();
  EXPECT_EQ(stats.records_appended, uint64_t{kThreads * kEach});
  EXPECT_EQ(stats.durable_seq, uint64_t{kThreads * kEach});
  // Every record waited for its fsync, yet batches shared them.
  EXPECT_LT(stats.fsyncs, uint64_t{kThreads * kEach});
  EXPECT_GT(stats.fsyncs, 0u);
}

TEST(FileStoreTest, TornTailIsCutAndReported) {
  const std::string dir = NewDir("torn");
  {
    auto store = *FileStore::Open({.dir = dir});
    ASSERT_TRUE(store->Recover().ok());
    store->Append(Released("a"));
    ASSERT_TRUE(Durable(*store, store->Append(Released("b"))).ok());
  }
  const std::string log = dir + "/" + FileStore::LogName(1);
  const auto good_size = fs::file_size(log);
  {
    // Half a record, as a crash in mid-write leaves it.
    std::ofstream f(log, std::ios::binary | std::ios::app);
    f.write("\x20\x00\x00\x00\x12\x34", 6);
  }
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->records.size(), 2u);
  EXPECT_EQ(s->info.truncated_file, log);
  EXPECT_EQ(s->info.truncated_offset, good_size);
  EXPECT_EQ(s->info.truncated_bytes, 6u);
  EXPECT_NE(s->info.truncation_reason.find("torn"), std::string::npos);
  EXPECT_EQ(fs::file_size(log), good_size);
  // Appending goes on after the cut.
  EXPECT_EQ(store->Append(Released("c")), 3u);
  ASSERT_TRUE(Durable(*store, 3).ok());
}

TEST(FileStoreTest, CorruptLastRecordIsCut) {
  const std::string dir = NewDir("corrupt_tail");
  {
    auto store = *FileStore::Open({.dir = dir});
    ASSERT_TRUE(store->Recover().ok());
    store->Append(Released("a"));
    ASSERT_TRUE(Durable(*store, store->Append(Released("bbbb"))).ok());
  }
  const std::string log = dir + "/" + FileStore::LogName(1);
  {
    std::fstream f(log, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(-2, std::ios::end);
    f.put('X');
  }
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->records.size(), 1u);
  EXPECT_EQ(s->info.truncation_reason, "checksum mismatch");
}

TEST(FileStoreTest, DamageBeforeTheLastFileIsAnError) {
  const std::string dir = NewDir("corrupt_middle");
  {
    auto store = *FileStore::Open({.dir = dir});
    ASSERT_TRUE(store->Recover().ok());
    store->Append(Released("a"));
    store->Append(Released("b"));
    store->Cut();  // later records go to a second file
    ASSERT_TRUE(Durable(*store, store->Append(Released("c"))).ok());
  }
  const std::string first = dir + "/" + FileStore::LogName(1);
  ASSERT_TRUE(fs::exists(dir + "/" + FileStore::LogName(3)));
  fs::resize_file(first, fs::file_size(first) - 3);
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find(first), std::string::npos) << s.status();
}

TEST(FileStoreTest, UnreadableSnapshotIsAnErrorNamingTheFile) {
  const std::string dir = NewDir("bad_snapshot");
  fs::create_directories(dir);
  const std::string snap = dir + "/" + FileStore::SnapshotName(5);
  std::ofstream(snap) << "ASLEDGR1 this is not a snapshot";
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.status().message().find(snap), std::string::npos) << s.status();
  // And a ledger on it does not start empty.
  auto again = *FileStore::Open({.dir = NewDir("bad_snapshot2")});
  store.reset();
  auto ledger = Ledger::Open({}, *FileStore::Open({.dir = dir}));
  EXPECT_FALSE(ledger.ok());
}

TEST(FileStoreTest, SnapshotCompactsTheLog) {
  const std::string dir = NewDir("compact");
  ManualClock clock;
  LedgerOptions options{.clock = &clock};
  std::vector<VmInfo> vms;
  {
    auto ledger = *Ledger::Open(options, *FileStore::Open({.dir = dir}));
    ASSERT_TRUE(ledger->RegisterNode({.name = "n", .total = {4000, 16 * kGiB}}).ok());
    ASSERT_TRUE(
        ledger->PlaceVm({.name = "a", .bounds = {1, 8}, .compute_unit = kCu, .initial = kCu}).ok());
    for (int i = 1; i <= 8; ++i) {  // 1 CU is no change: 7 records
      ASSERT_TRUE(
          ledger->Request({.node = "n", .vm = "a", .compute_unit = kCu, .resources = kCu * i})
              .ok());
    }
    ASSERT_TRUE(ledger->Snapshot().ok());
    EXPECT_EQ(ledger->store_stats()->records_since_snapshot, 0u);
    ASSERT_TRUE(
        ledger->Request({.node = "n", .vm = "a", .compute_unit = kCu, .resources = kCu * 3}).ok());
    vms = ledger->ListVms();
  }
  EXPECT_EQ(Files(dir),
            (std::vector<std::string>{"LOCK", FileStore::LogName(10), FileStore::SnapshotName(9)}));
  auto ledger = Ledger::Open(options, *FileStore::Open({.dir = dir}));
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EXPECT_EQ((*ledger)->ListVms(), vms);
  EXPECT_EQ((*ledger)->recovery().snapshot_file, dir + "/" + FileStore::SnapshotName(9));
  EXPECT_EQ((*ledger)->recovery().records_replayed, 1u);
}

TEST(FileStoreTest, LeftoverTemporaryFilesAreRemoved) {
  const std::string dir = NewDir("tmpfiles");
  fs::create_directories(dir);
  std::ofstream(dir + "/" + FileStore::SnapshotName(3) + ".tmp") << "half";
  auto store = *FileStore::Open({.dir = dir});
  ASSERT_TRUE(store->Recover().ok());
  EXPECT_EQ(Files(dir), (std::vector<std::string>{"LOCK", FileStore::LogName(1)}));
}

TEST(FileStoreTest, AWriteErrorFailsWaitersInsteadOfLying) {
  const std::string dir = NewDir("fail");
  auto store = *FileStore::Open({.dir = dir});
  ASSERT_TRUE(store->Recover().ok());
  ASSERT_TRUE(Durable(*store, store->Append(Released("a"))).ok());
  // A log file that cannot be created: the cut's new file name is taken by a directory.
  fs::create_directories(dir + "/" + FileStore::LogName(2));
  store->Cut();
  absl::Status s = Durable(*store, store->Append(Released("b")));
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(store->Stats().error.ok());
  EXPECT_FALSE(Durable(*store, store->Append(Released("c"))).ok());
}

}  // namespace
}  // namespace autoscale::ledger
