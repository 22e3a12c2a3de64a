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

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/fault_injection_file_system.h"
#include "autoscale/ledger/internal/log_format.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/testing/eventually.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

namespace fs = std::filesystem;
using testing::Eventually;
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
  EXPECT_EQ(s->info.truncation_reason, "torn tail: checksum mismatch");
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
  EXPECT_EQ(Files(dir), (std::vector<std::string>{"LOCK", "RESERVE", FileStore::LogName(10),
                                                  FileStore::SnapshotName(9)}));
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
  // The writer may have opened the first log file by now; the leftover must be gone either way.
  for (const std::string& f : Files(dir)) EXPECT_FALSE(absl::EndsWith(f, ".tmp")) << f;
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

TEST(FileStoreTest, AFlippedByteInTheMiddleOfTheLastFileStopsTheStart) {
  const std::string dir = NewDir("flipped");
  {
    auto store = *FileStore::Open({.dir = dir});
    ASSERT_TRUE(store->Recover().ok());
    uint64_t last = 0;
    for (int i = 0; i < 10; ++i) last = store->Append(Released("vm-" + std::to_string(i)));
    ASSERT_TRUE(Durable(*store, last).ok());
  }
  const std::string log = dir + "/" + FileStore::LogName(1);
  std::string bytes = *FileSystem::Default().ReadFile(log);
  const internal::LogScan whole = internal::ScanLog(bytes, 1);
  ASSERT_EQ(whole.frames.size(), 10u);
  // A byte in record 5's payload.
  const internal::Frame& fifth = whole.frames[4];
  bytes[fifth.offset + internal::kFrameHeader + 2] ^= 0x40;
  {
    auto f = *FileSystem::Default().OpenForAppend(log, /*truncate=*/true);
    ASSERT_TRUE(f->Append(bytes).ok());
  }
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  ASSERT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
  const std::string message(s.status().message());
  for (const std::string& part :
       {log, absl::StrCat("offset ", fifth.offset), std::string("record 5 should be"),
        std::string("checksum mismatch"),
        absl::StrCat("a valid record 6 follows at offset ", whole.frames[5].offset),
        std::string("ledgerctl truncate"), std::string("--at=5")}) {
    EXPECT_NE(message.find(part), std::string::npos) << "no \"" << part << "\" in " << message;
  }
  EXPECT_EQ(*FileSystem::Default().ReadFile(log), bytes) << "nothing was cut";
}

TEST(FileStoreTest, AnOperatorsCutIsReportedAtTheNextStart) {
  const std::string dir = NewDir("note");
  fs::create_directories(dir);
  TruncationNote note;
  note.set_file(dir + "/" + FileStore::LogName(1));
  note.set_offset(40);
  note.set_bytes(120);
  note.set_reason("cut by ledgerctl truncate --at=3: records 3..5 dropped");
  std::ofstream(dir + "/TRUNCATED", std::ios::binary) << note.SerializeAsString();
  {
    auto store = *FileStore::Open({.dir = dir});
    absl::StatusOr<StoredState> s = store->Recover();
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->info.truncated_file, note.file());
    EXPECT_EQ(s->info.truncated_bytes, 120u);
    EXPECT_EQ(s->info.truncation_reason, note.reason());
  }
  auto store = *FileStore::Open({.dir = dir});
  absl::StatusOr<StoredState> s = store->Recover();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->info.truncated_file.empty()) << "reported once";
}

// The store over the fault-injecting file layer: write errors, full disks, recovery's syncs.
class FileStoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/d").ok()); }

  std::unique_ptr<FileStore> Open(uint64_t reserve, bool sync = true) {
    auto store = *FileStore::Open({.dir = "/d",
                                   .sync = sync,
                                   .reserve_bytes = reserve,
                                   .retry_min = absl::Milliseconds(1),
                                   .retry_max = absl::Milliseconds(20),
                                   .fs = &fs_});
    absl::StatusOr<StoredState> s = store->Recover();
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) recovered_ = *std::move(s);
    return store;
  }

  // The records of the log file as they are: whole frames only, else the test fails.
  std::vector<std::string> LogRecords() {
    std::optional<std::string> bytes = fs_.Contents("/d/" + FileStore::LogName(1));
    if (!bytes) return {};
    internal::LogScan scan = internal::ScanLog(*bytes, 1);
    EXPECT_TRUE(scan.damage.empty()) << scan.damage << " at " << scan.end;
    std::vector<std::string> out;
    for (const LedgerRecord& r : scan.records) out.push_back(r.vm_released());
    return out;
  }

  FaultInjectionFileSystem fs_{11};
  StoredState recovered_;
};

TEST_F(FileStoreFaultTest, AWriteErrorNeverLeavesAPartialRecordBehind) {
  auto store = Open(/*reserve=*/0);
  ASSERT_TRUE(Durable(*store, store->Append(Released("a"))).ok());
  // Room for half a record more.
  fs_.SetCapacity(*fs_.AllocatedBytes("/d/" + FileStore::LogName(1)) + 10);
  const absl::Status failed = Durable(*store, store->Append(Released("b")));
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_NE(failed.message().find("No space left"), std::string::npos) << failed;
  EXPECT_FALSE(store->Writable(/*growth=*/false).ok()) << "changes are refused while it fails";
  EXPECT_FALSE(store->Stats().error.ok());
  // Appended meanwhile (the ledger would refuse it; the store keeps the order anyway).
  const uint64_t c = store->Append(Released("c"));
  fs_.SetCapacity(1 << 20);
  ASSERT_TRUE(Eventually([&] { return store->Stats().durable_seq >= c; }));
  EXPECT_TRUE(store->Writable(true).ok());
  EXPECT_GE(store->Stats().write_errors, 1u);
  EXPECT_EQ(LogRecords(), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(FileStoreFaultTest, AFailedSyncRewritesWhatItMayHaveLost) {
  auto store = Open(/*reserve=*/0);
  ASSERT_TRUE(Durable(*store, store->Append(Released("a"))).ok());
  // The next fdatasync fails (the kernel may have dropped the pages: "fsyncgate").
  std::atomic<bool> failed_once{false};
  fs_.SetFault([&](FaultInjectionFileSystem::Op op, const std::string&) {
    if (op == FaultInjectionFileSystem::Op::kSync && !failed_once.exchange(true)) {
      return absl::UnavailableError("fdatasync: Input/output error");
    }
    return absl::OkStatus();
  });
  const uint64_t b = store->Append(Released("b"));
  EXPECT_EQ(Durable(*store, b).code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(Eventually([&] { return store->Stats().durable_seq >= b; }));
  store.reset();
  fs_.Restart(FaultInjectionFileSystem::Crash::kPowerLoss);
  EXPECT_EQ(LogRecords(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(FileStoreFaultTest, AFullDiskUsesTheReserveAndRefusesGrowthUntilThereIsRoom) {
  auto store = Open(/*reserve=*/4096);
  ASSERT_TRUE(Durable(*store, store->Append(Released("a"))).ok());
  EXPECT_FALSE(store->Stats().low_space);
  // Full: the next write fails, frees the reserve and goes through.
  fs_.SetCapacity(4096 + *fs_.AllocatedBytes("/d/" + FileStore::LogName(1)));
  const absl::Status b = Durable(*store, store->Append(Released("b")));
  EXPECT_TRUE(b.ok()) << b;
  EXPECT_TRUE(store->Stats().low_space);
  const absl::Status growth = store->Writable(/*growth=*/true);
  EXPECT_EQ(growth.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(growth.message().find("full"), std::string::npos) << growth;
  EXPECT_TRUE(store->Writable(/*growth=*/false).ok()) << "a decrease is still recorded";
  ASSERT_TRUE(Durable(*store, store->Append(Released("c"))).ok());
  // Room again (for twice the reserve): the reserve comes back, and growth with it.
  fs_.SetCapacity(1 << 20);
  ASSERT_TRUE(Eventually([&] { return store->Writable(true).ok(); }));
  EXPECT_FALSE(store->Stats().low_space);
  EXPECT_GE(*fs_.AllocatedBytes("/d/RESERVE"), 4096u);
  EXPECT_EQ(LogRecords(), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(FileStoreFaultTest, RecoverySyncsWhatItReadsBeforeServingIt) {
  {
    // A process that wrote records and died before syncing them: the page cache has them.
    auto store = Open(/*reserve=*/0, /*sync=*/false);
    ASSERT_TRUE(Durable(*store, store->Append(Released("a"))).ok());
  }
  fs_.Restart(FaultInjectionFileSystem::Crash::kProcess);
  {
    auto store = Open(/*reserve=*/0);
    ASSERT_EQ(recovered_.records.size(), 1u) << "read back from the page cache";
  }
  // Served as durable, so a power loss now must not lose it.
  fs_.Restart(FaultInjectionFileSystem::Crash::kPowerLoss);
  auto store = Open(/*reserve=*/0);
  EXPECT_EQ(recovered_.records.size(), 1u);
}

}  // namespace
}  // namespace autoscale::ledger
