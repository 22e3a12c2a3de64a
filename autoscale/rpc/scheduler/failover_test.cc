// The gRPC client with several schedulers, against real gRPC servers on loopback whose services
// play a leader, standbys and a frozen scheduler: the client goes where a standby points (also to
// an address it was not given), passes a dead one by, stays with the leader once found, gives up
// within its timeout when nobody leads, and never sends a call that timed out again.
#include <atomic>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace autoscale::rpc::scheduler {
namespace {

// Answers GetStatus as the leader (records_appended = its id), as a standby naming `leader`, or
// after sleeping (a frozen scheduler). The other calls are never made here.
class Fake final : public SchedulerService {
 public:
  enum Role { kLeader, kStandby, kSlow };
  Fake(Role role, uint64_t id) : role_(role), id_(id) {}

  std::string leader;
  std::atomic<int> calls{0};

  absl::StatusOr<api::v1::StatusResponse> GetStatus(const api::v1::StatusRequest&) override {
    ++calls;
    switch (role_) {
      case kLeader: {
        api::v1::StatusResponse r;
        r.set_records_appended(id_);
        return r;
      }
      case kStandby:
        return NotLeaderError("a standby", leader);
      case kSlow:
        absl::SleepFor(absl::Seconds(2));
        return absl::InternalError("woke up too late");
    }
    return absl::InternalError("unreachable");
  }
  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
      const api::v1::RegisterNodeRequest&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
      const api::v1::MigrationOrdersRequest&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
      const api::v1::MigrationResult&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(const api::v1::PlaceVmRequest&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(const api::v1::ReleaseVmRequest&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::ListNodesResponse> ListNodes(const api::v1::ListRequest&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest&) override {
    return absl::UnimplementedError("");
  }

 private:
  const Role role_;
  const uint64_t id_;
};

struct Served {
  Served(Fake::Role role, uint64_t id) : fake(role, id) {
    absl::StatusOr<std::unique_ptr<Server>> s = StartGrpcServer(fake, "127.0.0.1:0");
    EXPECT_TRUE(s.ok()) << s.status();
    server = *std::move(s);
  }
  const std::string& address() const { return server->address(); }
  Fake fake;
  std::unique_ptr<Server> server;
};

std::unique_ptr<SchedulerService> Client(const std::string& addresses,
                                         absl::Duration timeout = absl::Seconds(2)) {
  absl::StatusOr<std::unique_ptr<SchedulerService>> c = NewGrpcClient(addresses, timeout);
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

TEST(Failover, AStandbySendsTheCallToTheLeaderAndTheClientStaysThere) {
  Served leader(Fake::kLeader, 7), standby(Fake::kStandby, 0);
  standby.fake.leader = leader.address();
  std::unique_ptr<SchedulerService> client = Client(standby.address() + "," + leader.address());
  absl::StatusOr<api::v1::StatusResponse> s = client->GetStatus({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->records_appended(), 7u);
  ASSERT_TRUE(client->GetStatus({}).ok());
  EXPECT_EQ(standby.fake.calls.load(), 1) << "the second call went straight to the leader";
  EXPECT_EQ(leader.fake.calls.load(), 2);
}

TEST(Failover, ALeaderNotInTheListIsFoundThroughAStandby) {
  Served leader(Fake::kLeader, 9), standby(Fake::kStandby, 0);
  standby.fake.leader = leader.address();
  std::unique_ptr<SchedulerService> client = Client(standby.address());
  absl::StatusOr<api::v1::StatusResponse> s = client->GetStatus({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->records_appended(), 9u);
}

TEST(Failover, ADeadSchedulerIsPassedBy) {
  Served leader(Fake::kLeader, 3);
  std::string dead;
  {
    Served gone(Fake::kLeader, 0);
    dead = gone.address();
  }
  std::unique_ptr<SchedulerService> client = Client(dead + "," + leader.address());
  absl::StatusOr<api::v1::StatusResponse> s = client->GetStatus({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->records_appended(), 3u);
}

TEST(Failover, WithoutALeaderTheCallFailsUnavailableNamingWhatWasTried) {
  Served a(Fake::kStandby, 0), b(Fake::kStandby, 0);
  std::unique_ptr<SchedulerService> client = Client(a.address() + "," + b.address());
  absl::StatusOr<api::v1::StatusResponse> s = client->GetStatus({});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsUnavailable(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("a standby"), absl::string_view::npos) << s.status();
  EXPECT_GE(a.fake.calls.load() + b.fake.calls.load(), 2);
  EXPECT_LE(a.fake.calls.load() + b.fake.calls.load(), 5) << "bounded";
}

TEST(Failover, AStandbyNamesTheLeaderInTheTrailingMetadata) {
  Served standby(Fake::kStandby, 0);
  standby.fake.leader = "10.1.2.3:10299";
  auto stub = api::v1::Scheduler::NewStub(
      grpc::CreateChannel(standby.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  api::v1::StatusRequest request;
  request.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  api::v1::StatusResponse response;
  const grpc::Status s = stub->GetStatus(&context, request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kLeaderMetadata);
  ASSERT_NE(it, trailers.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), "10.1.2.3:10299");
  EXPECT_EQ(LeaderOf(NotLeaderError("x", "h:1")), "h:1");
  EXPECT_EQ(LeaderOf(absl::UnavailableError("x")), "");
}

TEST(Failover, ACallThatTimedOutIsNotSentAgainButTheNextOneMovesOn) {
  Served slow(Fake::kSlow, 0), leader(Fake::kLeader, 5);
  std::unique_ptr<SchedulerService> client =
      Client(slow.address() + "," + leader.address(), absl::Milliseconds(500));
  absl::StatusOr<api::v1::StatusResponse> s = client->GetStatus({});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(s.status())) << s.status();
  EXPECT_EQ(leader.fake.calls.load(), 0) << "a call that may have been acted on was sent again";
  s = client->GetStatus({});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->records_appended(), 5u);
  EXPECT_EQ(slow.fake.calls.load(), 1);
}

TEST(Failover, AStandbyIsNotFollowedBackToALeaderThatJustTimedOut) {
  Served frozen(Fake::kSlow, 0), standby(Fake::kStandby, 0);
  standby.fake.leader = frozen.address();  // until its lease expires
  std::unique_ptr<SchedulerService> client =
      Client(frozen.address() + "," + standby.address(), absl::Milliseconds(500));
  EXPECT_TRUE(absl::IsDeadlineExceeded(client->GetStatus({}).status()));
  absl::StatusOr<api::v1::StatusResponse> s = client->GetStatus({});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsUnavailable(s.status())) << "not the standby's answer: " << s.status();
  EXPECT_EQ(frozen.fake.calls.load(), 1) << "it was called again while still silent";
  EXPECT_EQ(standby.fake.calls.load(), 1);
}

}  // namespace
}  // namespace autoscale::rpc::scheduler
