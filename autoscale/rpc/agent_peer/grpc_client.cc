#include "autoscale/rpc/agent_peer/grpc_client.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "autoscale/api/agent.grpc.pb.h"
#include "autoscale/rpc/agent_peer/internal/protocol.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/grpc_status.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::agent_peer {
namespace {

class GrpcClient final : public MigrationPeer {
 public:
  GrpcClient(std::string address, absl::Duration timeout, const Security& security,
             const std::string& server_identity)
      : address_(std::move(address)),
        timeout_(timeout),
        stub_(api::v1::Agent::NewStub(
            grpc::CreateChannel(address_, rpc::ChannelCredentials(security, server_identity)))) {}

  absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
      const api::v1::PrepareIncomingRequest& request) override {
    api::v1::PrepareIncomingResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    grpc::Status s = stub_->PrepareIncoming(&context, internal::Versioned(request), &response);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("agent ", address_, " PrepareIncoming"));
    return response;
  }

  absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& request) override {
    api::v1::FinishIncomingResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    return FromGrpc(stub_->FinishIncoming(&context, internal::Versioned(request), &response),
                    absl::StrCat("agent ", address_, " FinishIncoming"));
  }

 private:
  void SetDeadline(grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
  }

  const std::string address_;
  const absl::Duration timeout_;
  std::unique_ptr<api::v1::Agent::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MigrationPeer>> NewGrpcClient(const std::string& address,
                                                             absl::Duration timeout,
                                                             const Security& security,
                                                             const std::string& server_identity) {
  if (address.empty()) return absl::InvalidArgumentError("agent address is empty");
  return std::make_unique<GrpcClient>(address, timeout, security, server_identity);
}

}  // namespace autoscale::rpc::agent_peer
