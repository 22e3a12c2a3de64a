// The agent peer protocol's two transports give the same answers: the same calls go to two
// scripted targets, one through the gRPC client and server over loopback, one through the
// in-process client. The target must receive the same requests (the version set), the callers
// the same answers, and errors the same code and the target's message. (The real target is the
// agent, which needs QEMU to take a VM in; the e2e migration test in examples/demo covers it.)
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/rpc/agent_peer/grpc_client.h"
#include "autoscale/rpc/agent_peer/grpc_server.h"
#include "autoscale/rpc/agent_peer/in_process.h"
#include "autoscale/rpc/server.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/test_ca.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace autoscale::rpc::agent_peer {
namespace {

using ::google::protobuf::util::MessageDifferencer;

// A target that answers from a script: orders it knows get a URI, others NOT_FOUND; a VM named
// "broken" fails as a QEMU that cannot start would. Records what it was asked.
class ScriptedTarget final : public MigrationPeer {
 public:
  absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
      const api::v1::PrepareIncomingRequest& request) override {
    Record(request.ShortDebugString());
    if (request.vm().name() == "broken") {
      return absl::InternalError("starting the incoming QEMU: exited with status 1");
    }
    if (request.order_id() != 7) {
      return absl::NotFoundError(absl::StrCat("no migration order ", request.order_id()));
    }
    api::v1::PrepareIncomingResponse r;
    r.set_uri("tcp:127.0.0.1:49152");
    return r;
  }
  absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& request) override {
    Record(request.ShortDebugString());
    if (request.order_id() != 7) {
      return absl::FailedPreconditionError(
          absl::StrCat("order ", request.order_id(), " was not prepared here"));
    }
    return absl::OkStatus();
  }
  std::vector<std::string> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  void Record(std::string r) {
    absl::MutexLock lock(&mu_);
    requests_.push_back(std::move(r));
  }
  mutable absl::Mutex mu_;
  std::vector<std::string> requests_ ABSL_GUARDED_BY(mu_);
};

TEST(AgentPeerTransportTest, SameRequestsAnswersAndErrors) {
  ScriptedTarget remote_target, local_target;
  absl::StatusOr<std::unique_ptr<Server>> server = StartGrpcServer(remote_target, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<MigrationPeer> remote = *NewGrpcClient((*server)->address(), absl::Seconds(10));
  InProcessClient local(local_target);

  auto same_status = [&](const std::string& what, const absl::Status& r, const absl::Status& l) {
    EXPECT_EQ(r.code(), l.code()) << what << ": over gRPC " << r << ", in process " << l;
    EXPECT_TRUE(absl::EndsWith(r.message(), l.message())) << what << ": " << r << " vs " << l;
    if (!r.ok()) {
      EXPECT_TRUE(absl::StrContains(r.message(), (*server)->address())) << r;
    }
  };

  int errors = 0;
  for (const auto& [order, vm] :
       std::vector<std::pair<uint64_t, std::string>>{{7, "vm1"}, {8, "vm1"}, {7, "broken"}}) {
    api::v1::PrepareIncomingRequest prepare;
    prepare.set_order_id(order);
    prepare.mutable_vm()->set_name(vm);
    prepare.add_cpu_device_add_args("{\"driver\":\"host-x86_64-cpu\",\"id\":\"cpu-1\"}");
    prepare.set_virtio_mem_requested_bytes(int64_t{1} << 30);
    prepare.set_has_virtio_mem(true);
    const std::string what = absl::StrCat("prepare order ", order, " of ", vm);
    absl::StatusOr<api::v1::PrepareIncomingResponse> r = remote->PrepareIncoming(prepare);
    absl::StatusOr<api::v1::PrepareIncomingResponse> l = local.PrepareIncoming(prepare);
    same_status(what, r.status(), l.status());
    if (r.ok() && l.ok()) {
      EXPECT_TRUE(MessageDifferencer::Equals(*r, *l))
          << what << ": " << r->ShortDebugString() << " vs " << l->ShortDebugString();
      EXPECT_EQ(r->protocol_version(), api::v1::PROTOCOL_VERSION_1);
    } else {
      ++errors;
    }
  }
  for (uint64_t order : {7, 9}) {
    api::v1::FinishIncomingRequest finish;
    finish.set_order_id(order);
    finish.set_vm("vm1");
    finish.set_succeeded(order == 7);
    finish.set_error(order == 7 ? "" : "the source lost the VM");
    const absl::Status r = remote->FinishIncoming(finish);
    const absl::Status l = local.FinishIncoming(finish);
    same_status(absl::StrCat("finish order ", order), r, l);
    errors += !r.ok();
  }
  EXPECT_EQ(errors, 3);

  // The targets were asked the same, with the protocol version set by both clients.
  EXPECT_EQ(remote_target.requests(), local_target.requests());
  ASSERT_EQ(local_target.requests().size(), 5u);
  for (const std::string& r : local_target.requests()) {
    EXPECT_TRUE(absl::StrContains(r, "protocol_version: PROTOCOL_VERSION_1")) << r;
  }
  (*server)->Shutdown(absl::Seconds(1));
}

TEST(AgentPeerTransportTest, UnreachableAgentIsAClearError) {
  std::unique_ptr<MigrationPeer> peer =
      *NewGrpcClient("unix:/nonexistent/agent.sock", absl::Milliseconds(300));
  const absl::Status s = peer->FinishIncoming(api::v1::FinishIncomingRequest());
  EXPECT_TRUE(s.code() == absl::StatusCode::kUnavailable ||
              s.code() == absl::StatusCode::kDeadlineExceeded)
      << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "agent.sock FinishIncoming")) << s;
  EXPECT_EQ(NewGrpcClient("").status().code(), absl::StatusCode::kInvalidArgument);
}

// A source hands its target the VM (and what the VM's monitor trusts): with TLS it talks only to
// an agent whose certificate names the order's target node. Another node's valid certificate
// (node c answering at b's address, after a forged RegisterNode say) gets no request at all.
TEST(AgentPeerTransportTest, TlsClientReachesOnlyTheNodeItExpects) {
  AUTOSCALE_REQUIRE_OPENSSL();
  testing::TempDir dir("agent_peer_tls");
  absl::StatusOr<testing::TestCa> ca = testing::TestCa::Create(dir.path() + "/ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto security = [&](const std::string& file, const std::string& uri) {
    absl::StatusOr<TlsFiles> files = ca->Issue(file, uri);
    EXPECT_TRUE(files.ok()) << files.status();
    return *Security::MutualTls(*files);
  };
  ScriptedTarget target;
  absl::StatusOr<std::unique_ptr<Server>> server =
      StartGrpcServer(target, "127.0.0.1:0", security("c", "spiffe://test/node/c"));
  ASSERT_TRUE(server.ok()) << server.status();
  const Security source = security("a", "spiffe://test/node/a");
  api::v1::PrepareIncomingRequest prepare;
  prepare.set_order_id(7);
  prepare.mutable_vm()->set_name("vm1");

  std::unique_ptr<MigrationPeer> to_b =
      *NewGrpcClient((*server)->address(), absl::Seconds(5), source, "spiffe://test/node/b");
  absl::StatusOr<api::v1::PrepareIncomingResponse> r = to_b->PrepareIncoming(prepare);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(target.requests().empty()) << "node c was asked to take a VM meant for node b";

  std::unique_ptr<MigrationPeer> to_c =
      *NewGrpcClient((*server)->address(), absl::Seconds(5), source, "spiffe://test/node/c");
  r = to_c->PrepareIncoming(prepare);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(target.requests().size(), 1u);
  (*server)->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace autoscale::rpc::agent_peer
