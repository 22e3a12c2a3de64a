// The QMP client against real QEMU without a guest (paused with -S): negotiation, queries,
// errors, events, large replies, and concurrent callers. QEMU is started by the launcher, with a
// second QMP socket that these tests connect to themselves.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::qmp {
namespace {

using launcher::Vm;
using testing::NoGuestSpec;
using testing::TempDir;

class QmpQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_QEMU();
    launcher::VmSpec spec = NoGuestSpec("qmp-test");
    spec.extra_args = {"-qmp", absl::StrCat("unix:", dir_.path(), "/own.sock,server=on,wait=off")};
    auto vm = Vm::Start(spec);
    ASSERT_TRUE(vm.ok()) << vm.status();
    vm_ = std::move(*vm);
    auto client = QmpClient::Connect(absl::StrCat("unix:", dir_.path(), "/own.sock"));
    ASSERT_TRUE(client.ok()) << client.status();
    qmp_ = std::move(*client);
  }

  TempDir dir_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<QmpClient> qmp_;
};

TEST_F(QmpQemuTest, NegotiatesWithQemu10) {
  EXPECT_GE(qmp_->version().major, 10);
  EXPECT_FALSE(qmp_->version().package.empty());
  auto status = qmp_->Execute("query-status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(absl::StrContains(*status, R"("status":"prelaunch")")) << *status;
}

TEST_F(QmpQemuTest, QueriesHotpluggableCpusAndMemory) {
  auto cpus = qmp_->Execute("query-hotpluggable-cpus");
  ASSERT_TRUE(cpus.ok()) << cpus.status();
  // Four possible CPUs, the boot CPU plugged.
  EXPECT_TRUE(absl::StrContains(*cpus, R"("type":"qemu64-x86_64-cpu")")) << *cpus;
  EXPECT_TRUE(absl::StrContains(*cpus, R"("core-id":3)")) << *cpus;
  EXPECT_TRUE(absl::StrContains(*cpus, R"("qom-path":"/machine/unattached/device[0]")")) << *cpus;

  auto mem = qmp_->Execute("query-memory-devices");
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_TRUE(absl::StrContains(*mem, R"("type":"virtio-mem")")) << *mem;
  EXPECT_TRUE(absl::StrContains(*mem, R"("max-size":805306368)")) << *mem;

  auto size =
      qmp_->Execute("qom-get", R"({"path": "/machine/peripheral/vm0", "property": "size"})");
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, "0");
}

TEST_F(QmpQemuTest, ReportsQemuErrors) {
  auto bad = qmp_->Execute(
      "device_add",
      R"({"driver": "qemu64-x86_64-cpu", "id": "cpu9", "socket-id": 99, "core-id": 1, "thread-id": 0})");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "qmp device_add cpu9 on unix:"))
      << bad.status();
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "GenericError: Invalid CPU socket-id"))
      << bad.status();
  EXPECT_EQ(qmp_->Execute("no-such-command").status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(qmp_->Execute("device_del", R"({"id": "cpu9"})").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(qmp_->status().ok());
}

TEST_F(QmpQemuTest, DeliversEvents) {
  EventQueue events(*qmp_, {"RESUME", "STOP"});
  ASSERT_TRUE(qmp_->Execute("cont").ok());
  auto resume = events.Next(absl::Seconds(10));
  ASSERT_TRUE(resume.ok()) << resume.status();
  EXPECT_EQ(resume->name, "RESUME");
  EXPECT_GT(resume->timestamp, absl::Now() - absl::Minutes(1));
  ASSERT_TRUE(qmp_->Execute("stop").ok());
  auto stop = events.Next(absl::Seconds(10));
  ASSERT_TRUE(stop.ok()) << stop.status();
  EXPECT_EQ(stop->name, "STOP");
}

TEST_F(QmpQemuTest, ParsesTheLargestReply) {
  auto schema = qmp_->Execute("query-qmp-schema");
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_GT(schema->size(), 50000u);
  EXPECT_TRUE(absl::StrContains(*schema, R"("name":"device_add")"));
}

TEST_F(QmpQemuTest, ServesConcurrentCallers) {
  constexpr int kThreads = 4, kCalls = 100;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        const char* cmd = i % 2 ? "query-status" : "query-hotpluggable-cpus";
        auto r = qmp_->Execute(cmd);
        bool right = r.ok() && absl::StrContains(*r, i % 2 ? "\"running\"" : "\"vcpus-count\"");
        if (!right) ++failures[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

}  // namespace
}  // namespace autoscale::neonvm::qmp
