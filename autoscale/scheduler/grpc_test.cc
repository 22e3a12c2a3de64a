// The scheduler over real gRPC: servers on a loopback port (port 0) and on a unix socket in a
// short temporary directory, a durable file-backed ledger, real clients.
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "autoscale/base/units.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/scheduler/request_handler.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

api::v1::PermitRequest Ask(const std::string& vm, int64_t cus) {
  api::v1::PermitRequest r;
  r.set_node("n1");
  r.set_vm(vm);
  r.mutable_compute_unit()->set_milli_cpu(250);
  r.mutable_compute_unit()->set_memory_bytes(kGiB);
  r.mutable_resources()->set_milli_cpu(250 * cus);
  r.mutable_resources()->set_memory_bytes(kGiB * cus);
  return r;
}

class GrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/ledger";
    std::filesystem::remove_all(dir);
    ledger_ = *ledger::Ledger::Open({}, *ledger::FileStore::Open({.dir = dir}));
    ASSERT_TRUE(ledger_->RegisterNode({.name = "n1", .total = {64000, 256 * kGiB}}).ok());
    for (int i = 0; i < 32; ++i) {
      ASSERT_TRUE(ledger_
                      ->PlaceVm({.name = "vm" + std::to_string(i),
                                 .bounds = {1, 8},
                                 .compute_unit = {250, kGiB},
                                 .initial = {250, kGiB}})
                      .ok());
    }
    handler_ = std::make_unique<RequestHandler>(*ledger_, core::Resources{250, kGiB});
  }

  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<RequestHandler> handler_;
};

TEST_F(GrpcTest, DurableRequestsOverLoopback) {
  absl::StatusOr<std::unique_ptr<rpc::Server>> server =
      rpc::scheduler::StartGrpcServer(*handler_, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  std::unique_ptr<rpc::scheduler::SchedulerService> client =
      *rpc::scheduler::NewGrpcClient((*server)->address());
  absl::StatusOr<api::v1::PermitResponse> p = client->Request(Ask("vm0", 4));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->permit().memory_bytes(), 4 * kGiB);
  // The grant was logged and synced before the answer.
  EXPECT_GE(ledger_->store_stats()->durable_seq, ledger_->store_stats()->records_appended);

  // The scheduler's status codes come through.
  EXPECT_EQ(client->Request(Ask("ghost", 1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->Request(Ask("vm0", 9)).status().code(), absl::StatusCode::kInvalidArgument);
  api::v1::PermitRequest old = Ask("vm0", 1);
  old.set_protocol_version(static_cast<api::v1::ProtocolVersion>(7));
  absl::StatusOr<api::v1::PermitResponse> refused = client->Request(old);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find((*server)->address()), std::string::npos)
      << refused.status();
  api::v1::MigrationOrdersRequest orders;
  orders.set_node("n1");
  EXPECT_TRUE(client->GetMigrationOrders(orders).ok());
  (*server)->Shutdown(absl::Seconds(1));
}

TEST_F(GrpcTest, ConcurrentRequestsShareFsyncs) {
  std::unique_ptr<rpc::Server> server = *rpc::scheduler::StartGrpcServer(*handler_, "127.0.0.1:0");
  // One client shared by every thread, as an agent shares one between its VMs.
  std::unique_ptr<rpc::scheduler::SchedulerService> client =
      *rpc::scheduler::NewGrpcClient(server->address(), absl::Seconds(30));
  const uint64_t fsyncs_before = ledger_->store_stats()->fsyncs;
  constexpr int kThreads = 32, kEach = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!client->Request(Ask("vm" + std::to_string(t), 1 + i % 2 * 3)).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const uint64_t fsyncs = ledger_->store_stats()->fsyncs - fsyncs_before;
  EXPECT_GT(fsyncs, 0u);
  EXPECT_LT(fsyncs, uint64_t{kThreads * kEach}) << "no batching";
  EXPECT_TRUE(ledger_->CheckInvariants().ok());
}

TEST_F(GrpcTest, UnixSocket) {
  char dir[] = "/tmp/asched.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string address = std::string("unix:") + dir + "/s.sock";
  {
    std::unique_ptr<rpc::Server> server = *rpc::scheduler::StartGrpcServer(*handler_, address);
    EXPECT_EQ(server->address(), address);
    std::unique_ptr<rpc::scheduler::SchedulerService> client =
        *rpc::scheduler::NewGrpcClient(address);
    absl::StatusOr<api::v1::PermitResponse> p = client->Request(Ask("vm1", 2));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->permit().milli_cpu(), 500);
  }
  std::filesystem::remove_all(dir);
}

TEST(GrpcClientTest, UnreachableSchedulerIsUnavailable) {
  std::unique_ptr<rpc::scheduler::SchedulerService> client =
      *rpc::scheduler::NewGrpcClient("unix:/nonexistent/scheduler.sock", absl::Milliseconds(300));
  absl::StatusOr<api::v1::PermitResponse> p = client->Request(Ask("vm", 1));
  EXPECT_TRUE(p.status().code() == absl::StatusCode::kUnavailable ||
              p.status().code() == absl::StatusCode::kDeadlineExceeded)
      << p.status();
  EXPECT_NE(p.status().message().find("scheduler.sock"), std::string::npos) << p.status();
}

}  // namespace
}  // namespace autoscale::scheduler
