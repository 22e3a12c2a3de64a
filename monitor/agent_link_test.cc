// The monitor end to end on this machine: a real v1 memory cgroup with a child that allocates,
// the kernel watcher, the monitor logic, the agent link served by a real gRPC server, and the
// agent-side client.
#include "monitor/agent_link.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/rpc/monitor/grpc_client.h"
#include "autoscale/rpc/monitor/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "autoscale/testing/cgroup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lfc/resizer.h"
#include "monitor/cgroup_monitor.h"

namespace autoscale::monitor {
namespace {

using rpc::monitor::MonitorClient;
using ::testing::HasSubstr;

// What the agent side received.
struct Received {
  absl::Mutex mu;
  int metrics ABSL_GUARDED_BY(mu) = 0;
  std::vector<api::v1::UpscaleRequest> upscales ABSL_GUARDED_BY(mu);
  std::optional<absl::Status> closed ABSL_GUARDED_BY(mu);

  MonitorClient::Callbacks Callbacks() {
    return {
        .on_metrics =
            [this](const api::v1::Metrics&) {
              absl::MutexLock l(&mu);
              ++metrics;
            },
        .on_upscale_request =
            [this](const api::v1::UpscaleRequest& r) {
              absl::MutexLock l(&mu);
              upscales.push_back(r);
            },
        .on_closed =
            [this](const absl::Status& s) {
              absl::MutexLock l(&mu);
              closed = s;
            },
    };
  }
  bool AwaitUpscale(absl::Duration timeout) {
    absl::MutexLock l(&mu);
    auto have = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !upscales.empty(); };
    return mu.AwaitWithTimeout(absl::Condition(&have), timeout);
  }
  bool AwaitClosed(absl::Duration timeout) {
    absl::MutexLock l(&mu);
    auto have = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return closed.has_value(); };
    return mu.AwaitWithTimeout(absl::Condition(&have), timeout);
  }
};

class AgentLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cg = testing::TestCgroup::Create("service");
    if (!cg.ok()) GTEST_SKIP() << "needs a writable cgroup v1 memory controller: " << cg.status();
    cgroup_ = *std::move(cg);
    CgroupMonitorOptions options;
    options.cgroup_dir = cgroup_->dir();
    options.memory_bytes = 512 * kMiB;  // threshold (512 - 100) * 0.85 = 350 MiB
    options.monitor.sample_interval = absl::Milliseconds(50);
    auto runner = CgroupMonitor::Start(options, resizer_, [this](int64_t usage, int64_t t) {
      if (AgentLink* link = link_.load()) link->SendUpscaleRequest(usage, t);
    });
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = *std::move(runner);
    owned_link_ =
        std::make_unique<AgentLink>(runner_->monitor(), metrics_,
                                    AgentLinkOptions{.metrics_interval = absl::Milliseconds(100)});
    link_ = owned_link_.get();
    absl::StatusOr<std::unique_ptr<rpc::Server>> server =
        rpc::monitor::StartGrpcServer(*owned_link_, "127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = server_->address();
  }

  void TearDown() override {
    if (owned_link_) owned_link_->Disconnect();
    if (server_) server_->Shutdown(absl::Seconds(2));
    link_ = nullptr;
    owned_link_.reset();
    runner_.reset();
    cgroup_.reset();
  }

  std::unique_ptr<MonitorClient> ConnectClient(Received& received) {
    auto client = rpc::monitor::ConnectGrpc(address_, {}, received.Callbacks(), absl::Seconds(5));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  api::v1::Resources Memory(int64_t bytes) {
    api::v1::Resources r;
    r.set_milli_cpu(1000);
    r.set_memory_bytes(bytes);
    return r;
  }

  std::unique_ptr<testing::TestCgroup> cgroup_;
  lfc::NoopResizer resizer_;
  MetricsReader metrics_;
  std::unique_ptr<CgroupMonitor> runner_;
  std::unique_ptr<AgentLink> owned_link_;
  std::atomic<AgentLink*> link_{nullptr};
  std::unique_ptr<rpc::Server> server_;
  std::string address_;
};

TEST_F(AgentLinkTest, UpscaleRequestArrivesWhenAChildCrossesTheThreshold) {
  Received received;
  auto client = ConnectClient(received);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->HealthCheck(absl::Seconds(2)).ok());
  ASSERT_TRUE(cgroup_->Allocate(100 * kMiB).ok());
  EXPECT_FALSE(received.AwaitUpscale(absl::Milliseconds(300))) << "100 MiB is below 350 MiB";
  ASSERT_TRUE(cgroup_->Allocate(300 * kMiB).ok());
  ASSERT_TRUE(received.AwaitUpscale(absl::Seconds(5)));
  absl::MutexLock l(&received.mu);
  EXPECT_GE(received.upscales[0].usage_bytes(), received.upscales[0].threshold_bytes());
  EXPECT_EQ(received.upscales[0].threshold_bytes(), runner_->monitor().threshold_bytes());
  EXPECT_GT(received.metrics, 0) << "metrics stream to the agent";
}

TEST_F(AgentLinkTest, DownscaleRefusedAndApprovedAgainstRealUsage) {
  Received received;
  auto client = ConnectClient(received);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(cgroup_->Allocate(120 * kMiB).ok());
  absl::SleepFor(absl::Milliseconds(400));  // several samples of the new usage
  // At 256 MiB the threshold is 132 MiB: 120 MiB + 100 MiB of headroom does not fit.
  auto refused = client->RequestDownscale(Memory(256 * kMiB), absl::Seconds(2));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->ok());
  EXPECT_THAT(refused->status(), HasSubstr("would exceed the threshold"));
  EXPECT_EQ(runner_->monitor().memory_bytes(), 512 * kMiB);
  // At 384 MiB it is 241 MiB: approved, and the threshold follows.
  auto approved = client->RequestDownscale(Memory(384 * kMiB), absl::Seconds(2));
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_TRUE(approved->ok()) << approved->status();
  EXPECT_EQ(runner_->monitor().memory_bytes(), 384 * kMiB);
  // And back up.
  EXPECT_TRUE(client->NotifyUpscale(Memory(512 * kMiB), absl::Seconds(2)).ok());
  EXPECT_EQ(runner_->monitor().memory_bytes(), 512 * kMiB);
}

// Postgres's shared_buffers and /dev/shm are shared memory (shmem), which the kernel cannot
// reclaim without swap: it must count as used, or the monitor asks for memory late and approves
// downscales that leave Postgres no room.
TEST_F(AgentLinkTest, SharedMemoryCountsForUpscaleAndDownscale) {
  Received received;
  auto client = ConnectClient(received);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(cgroup_->AllocateShared(360 * kMiB).ok());
  ASSERT_TRUE(received.AwaitUpscale(absl::Seconds(5))) << "360 MiB of shmem is past 350 MiB";
  {
    absl::MutexLock l(&received.mu);
    EXPECT_GE(received.upscales[0].usage_bytes(), 350 * kMiB);
  }
  // Until the average of the samples has the shared memory in it (polled: no fixed sleep).
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (runner_->monitor().average_usage_bytes().value_or(0) < 300 * kMiB &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  // At 448 MiB the threshold is 296 MiB: 360 MiB in use does not fit.
  auto refused = client->RequestDownscale(Memory(448 * kMiB), absl::Seconds(2));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->ok());
  EXPECT_THAT(refused->status(), HasSubstr("would exceed the threshold"));
  EXPECT_EQ(runner_->monitor().memory_bytes(), 512 * kMiB);
}

TEST_F(AgentLinkTest, BadMessagesGetErrorsAndTheStreamStays) {
  Received received;
  auto client = ConnectClient(received);
  ASSERT_NE(client, nullptr);
  auto bad = client->RequestDownscale(Memory(-5), absl::Seconds(2));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("must be > 0"));
  EXPECT_TRUE(client->HealthCheck(absl::Seconds(2)).ok()) << "still connected";
}

TEST_F(AgentLinkTest, AgentsComeAndGo) {
  Received first;
  auto a = ConnectClient(first);
  ASSERT_NE(a, nullptr);
  Received second;
  auto b = ConnectClient(second);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(first.AwaitClosed(absl::Seconds(5))) << "a new agent replaces the old one";
  EXPECT_FALSE(a->connected());
  EXPECT_EQ(a->HealthCheck(absl::Seconds(1)).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(b->HealthCheck(absl::Seconds(2)).ok());
  b.reset();  // the agent disconnects
  Received third;
  auto c = ConnectClient(third);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->HealthCheck(absl::Seconds(2)).ok()) << "the next agent can connect";
}

TEST_F(AgentLinkTest, VanishedCgroupIsAnErrorAndTheMonitorKeepsRunning) {
  Received received;
  auto client = ConnectClient(received);
  ASSERT_NE(client, nullptr);
  cgroup_.reset();                   // the group disappears under the monitor
  absl::SleepFor(absl::Seconds(6));  // past the sample age limit
  auto d = client->RequestDownscale(Memory(256 * kMiB), absl::Seconds(2));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("no memory sample"));
  EXPECT_TRUE(client->HealthCheck(absl::Seconds(2)).ok());
}

// An agent whose stream is stuck in a write (a slow or stalled peer).
class StuckAgent final : public rpc::monitor::AgentStream {
 public:
  bool SendMetrics(const api::v1::Metrics&) override { return true; }
  bool SendUpscaleRequest(const api::v1::UpscaleRequest& r) override {
    release_.WaitForNotification();
    absl::MutexLock l(&mu_);
    sent_.push_back(r.usage_bytes());
    return true;
  }
  void Close() override {}
  void Release() { release_.Notify(); }
  // What was sent, once `last` was (or after 10 s).
  std::vector<int64_t> SentUpTo(int64_t last) {
    absl::MutexLock l(&mu_);
    auto have = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !sent_.empty() && sent_.back() == last;
    };
    mu_.AwaitWithTimeout(absl::Condition(&have), absl::Seconds(10));
    return sent_;
  }

 private:
  absl::Notification release_;
  absl::Mutex mu_;
  std::vector<int64_t> sent_ ABSL_GUARDED_BY(mu_);
};

// Upscale requests come from the monitor's event loop: queuing one must not wait for the agent
// (with a blocking write, this test would never get past the first request).
TEST(AgentLinkSend, AnUpscaleRequestNeverWaitsForTheAgent) {
  ManualClock clock;
  lfc::NoopResizer resizer;
  Monitor monitor(MonitorOptions{}, clock, resizer, {});
  MetricsReader metrics;
  AgentLink link(monitor, metrics, {});
  EXPECT_FALSE(link.SendUpscaleRequest(1, 1)) << "no agent connected";
  auto agent = std::make_shared<StuckAgent>();
  std::unique_ptr<rpc::monitor::AgentSession> session = link.Connect(agent, "stuck");
  EXPECT_TRUE(link.SendUpscaleRequest(100, 50));
  EXPECT_TRUE(link.SendUpscaleRequest(200, 50));
  EXPECT_TRUE(link.SendUpscaleRequest(300, 50));
  agent->Release();
  // The newest request is sent once the stream moves again; one not yet sent was replaced by it
  // (the first may have been in flight already).
  std::vector<int64_t> sent = agent->SentUpTo(300);
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(sent.back(), 300);
  EXPECT_LE(sent.size(), 2u);
  session.reset();
  EXPECT_FALSE(link.SendUpscaleRequest(1, 1)) << "the session ended";
}

TEST(MonitorClient, UnreachableMonitorIsAClearError) {
  Received received;
  auto client =
      rpc::monitor::ConnectGrpc("127.0.0.1:1", {}, received.Callbacks(), absl::Milliseconds(300));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace autoscale::monitor
