// ledgerctl's logic on real directories: dump, verify (clean and damaged), an operator's cut and
// what the next start reports about it, and refusing a directory in use.
#include "autoscale/ledger/tool.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/ledger.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

const Resources kCu{250, kGiB};

class ToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/tool_test." +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    // 2 nodes, 3 VMs, 7 requests: 12 records, each answered once durable.
    auto ledger = *Ledger::Open({}, *FileStore::Open({.dir = dir_}));
    ASSERT_TRUE(ledger->RegisterNode({.name = "a", .total = kCu * 32}).ok());
    ASSERT_TRUE(ledger->RegisterNode({.name = "b", .total = kCu * 32}).ok());
    for (const char* vm : {"x", "y", "z"}) {
      ASSERT_TRUE(
          ledger->PlaceVm({.name = vm, .bounds = {1, 8}, .compute_unit = kCu, .initial = kCu}, "a")
              .ok());
    }
    for (int i = 2; i <= 8; ++i) {
      ASSERT_TRUE(
          ledger->Request({.node = "a", .vm = "x", .compute_unit = kCu, .resources = kCu * i})
              .ok());
    }
  }

  std::string Log() const { return dir_ + "/" + FileStore::LogName(1); }

  // Flips one byte in the payload of record `seq`.
  void Damage(uint64_t seq) {
    std::string dump = Dump();
    std::vector<std::string> lines = absl::StrSplit(dump, '\n', absl::SkipEmpty());
    ASSERT_GE(lines.size(), seq);
    // The dump says where each record starts ("offset":"N").
    const std::string& line = lines[seq - 1];
    const size_t at = line.find("\"offset\":\"");
    ASSERT_NE(at, std::string::npos) << line;
    const uint64_t offset = std::stoull(line.substr(at + 10));
    std::string bytes = *FileSystem::Default().ReadFile(Log());
    bytes[offset + 16 + 1] ^= 0x01;
    auto f = *FileSystem::Default().OpenForAppend(Log(), /*truncate=*/true);
    ASSERT_TRUE(f->Append(bytes).ok());
  }

  std::string Dump() {
    std::ostringstream out;
    const absl::Status s = DumpLedger(FileSystem::Default(), dir_, out);
    EXPECT_TRUE(s.ok()) << s;
    return out.str();
  }

  std::string dir_;
};

TEST_F(ToolTest, DumpsEveryRecordAsAJsonLine) {
  const std::string dump = Dump();
  std::vector<std::string> lines = absl::StrSplit(dump, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 12u) << dump;
  EXPECT_NE(lines[0].find("\"seq\":\"1\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"nodeRegistered\":{\"name\":\"a\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[11].find("\"vmResized\""), std::string::npos) << lines[11];
}

TEST_F(ToolTest, VerifiesAWholeDirectory) {
  absl::StatusOr<VerifyReport> r = VerifyLedger(FileSystem::Default(), dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->problems.empty()) << r->problems[0];
  EXPECT_EQ(r->last_seq, 12u);
  EXPECT_EQ(r->records, 12u);
  EXPECT_EQ(r->nodes, 2u);
  EXPECT_EQ(r->vms, 3u);
}

TEST_F(ToolTest, FindsDamageInTheMiddleAndCutsThereOnlyWhenAsked) {
  Damage(5);
  absl::StatusOr<VerifyReport> r = VerifyLedger(FileSystem::Default(), dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->problems.size(), 1u);
  const std::string& p = r->problems[0];
  for (const std::string& part :
       {Log(), std::string("where record 5 should be: checksum mismatch"),
        std::string("valid records 6..12 follow"), std::string("truncate --at=5")}) {
    EXPECT_NE(p.find(part), std::string::npos) << "no \"" << part << "\" in " << p;
  }
  EXPECT_EQ(r->last_seq, 4u) << "a start could read up to record 4";
  EXPECT_NE(Dump().find("\"damage\":\"checksum mismatch\""), std::string::npos);

  // Only at or before the damage.
  EXPECT_EQ(TruncateLedger(FileSystem::Default(), dir_, 7).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<TruncateReport> cut = TruncateLedger(FileSystem::Default(), dir_, 5);
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_EQ(cut->file, Log());
  EXPECT_EQ(cut->readable_records, 7u) << "records 6..12";
  EXPECT_EQ(cut->last_readable_seq, 12u);
  EXPECT_NE(cut->reason.find("--at=5"), std::string::npos) << cut->reason;

  r = VerifyLedger(FileSystem::Default(), dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->problems.empty());
  EXPECT_EQ(r->last_seq, 4u);
  // The next start reports the cut.
  auto store = *FileStore::Open({.dir = dir_});
  absl::StatusOr<StoredState> s = store->Recover();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->last_seq, 4u);
  EXPECT_EQ(s->info.truncated_file, Log());
  EXPECT_EQ(s->info.truncation_reason, cut->reason);
}

TEST_F(ToolTest, RefusesADirectoryInUseAndCutsInsideTheSnapshot) {
  {
    auto store = *FileStore::Open({.dir = dir_});
    EXPECT_EQ(VerifyLedger(FileSystem::Default(), dir_).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  {
    auto ledger = *Ledger::Open({}, *FileStore::Open({.dir = dir_}));
    ASSERT_TRUE(ledger->Snapshot().ok());
  }
  const absl::Status s = TruncateLedger(FileSystem::Default(), dir_, 3).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("snapshot"), std::string::npos) << s;
  EXPECT_EQ(TruncateLedger(FileSystem::Default(), dir_, 13).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace autoscale::ledger
