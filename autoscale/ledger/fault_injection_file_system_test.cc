// The fault-injecting file layer itself: what each kind of crash keeps, crash points, capacity.
#include "autoscale/ledger/fault_injection_file_system.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

using Crash = FaultInjectionFileSystem::Crash;

std::vector<std::string> Names(FaultInjectionFileSystem& fs, const std::string& dir) {
  std::vector<std::string> names = *fs.ListDir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

class FaultInjectionFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs_.CreateDir("/d").ok()); }

  // A file with `synced` synced in a synced directory, then `more` written after.
  void Write(const std::string& path, const std::string& synced, const std::string& more) {
    auto f = *fs_.OpenForAppend(path, false);
    ASSERT_TRUE(f->Append(synced).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(fs_.SyncDir("/d").ok());
    ASSERT_TRUE(f->Append(more).ok());
  }

  FaultInjectionFileSystem fs_{7};
};

TEST_F(FaultInjectionFileSystemTest, PowerLossDropsWhatWasNotSynced) {
  Write("/d/a", "durable", "+lost");
  EXPECT_EQ(*fs_.ReadFile("/d/a"), "durable+lost");
  fs_.Restart(Crash::kPowerLoss);
  EXPECT_EQ(*fs_.ReadFile("/d/a"), "durable");
}

TEST_F(FaultInjectionFileSystemTest, AProcessCrashKeepsThePageCacheButNotForever) {
  Write("/d/a", "durable", "+cached");
  fs_.Restart(Crash::kProcess);
  EXPECT_EQ(*fs_.ReadFile("/d/a"), "durable+cached");
  // Still not synced: a power loss later drops it.
  fs_.Restart(Crash::kPowerLoss);
  EXPECT_EQ(*fs_.ReadFile("/d/a"), "durable");
}

TEST_F(FaultInjectionFileSystemTest, ATornPowerLossKeepsAPrefix) {
  Write("/d/a", "durable", "0123456789");
  fs_.Restart(Crash::kTornPowerLoss);
  const std::string data = *fs_.ReadFile("/d/a");
  EXPECT_EQ(data.substr(0, 7), "durable");
  EXPECT_EQ(data, std::string("durable0123456789").substr(0, data.size()));
}

TEST_F(FaultInjectionFileSystemTest, DirectoryEntriesNeedTheDirectorySynced) {
  Write("/d/kept", "k", "");
  // A new file, synced itself but not its directory entry; a rename and a removal, unsynced.
  auto f = *fs_.OpenForAppend("/d/new", false);
  ASSERT_TRUE(f->Append("n").ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(fs_.Rename("/d/kept", "/d/renamed").ok());
  EXPECT_EQ(Names(fs_, "/d"), (std::vector<std::string>{"new", "renamed"}));
  fs_.Restart(Crash::kPowerLoss);
  EXPECT_EQ(Names(fs_, "/d"), (std::vector<std::string>{"kept"}));
  EXPECT_EQ(*fs_.ReadFile("/d/kept"), "k");

  ASSERT_TRUE(fs_.Remove("/d/kept").ok());
  fs_.Restart(Crash::kPowerLoss);
  EXPECT_EQ(Names(fs_, "/d"), (std::vector<std::string>{"kept"})) << "an unsynced removal";
  ASSERT_TRUE(fs_.Remove("/d/kept").ok());
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  fs_.Restart(Crash::kPowerLoss);
  EXPECT_TRUE(Names(fs_, "/d").empty());
}

TEST_F(FaultInjectionFileSystemTest, EverythingFailsFromTheCrashPointOn) {
  auto f = *fs_.OpenForAppend("/d/a", false);
  fs_.CrashAt(fs_.operations() + 2);
  EXPECT_TRUE(f->Append("x").ok());
  EXPECT_FALSE(f->Sync().ok());
  EXPECT_TRUE(fs_.crashed());
  EXPECT_FALSE(f->Append("y").ok());
  EXPECT_FALSE(fs_.ReadFile("/d/a").ok());
  fs_.Restart(Crash::kPowerLoss);
  EXPECT_FALSE(fs_.crashed());
  EXPECT_EQ(fs_.ReadFile("/d/a").status().code(), absl::StatusCode::kNotFound)
      << "its directory entry was never synced";
}

TEST_F(FaultInjectionFileSystemTest, AFullDiskWritesWhatFitsAndSaysSo) {
  fs_.SetCapacity(10);
  ASSERT_TRUE(fs_.Allocate("/d/reserve", 4).ok());
  EXPECT_EQ(*fs_.FreeBytes("/d"), 6u);
  auto f = *fs_.OpenForAppend("/d/a", false);
  const absl::Status s = f->Append("0123456789");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(*fs_.ReadFile("/d/a"), "012345");
  ASSERT_TRUE(fs_.Remove("/d/reserve").ok());
  EXPECT_TRUE(f->Append("6789").ok());
  EXPECT_FALSE(fs_.Allocate("/d/reserve", 4).ok());
}

TEST_F(FaultInjectionFileSystemTest, LocksAreExclusive) {
  auto lock = fs_.Lock("/d/LOCK");
  ASSERT_TRUE(lock.ok());
  EXPECT_EQ(fs_.Lock("/d/LOCK").status().code(), absl::StatusCode::kFailedPrecondition);
  lock->reset();
  EXPECT_TRUE(fs_.Lock("/d/LOCK").ok());
}

}  // namespace
}  // namespace autoscale::ledger
