#include "autoscale/rpc/agent_peer_grpc.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "autoscale/rpc/grpc_status.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc {
namespace {

class GrpcMigrationPeer final : public MigrationPeer {
 public:
  GrpcMigrationPeer(std::string address, absl::Duration timeout)
      : address_(std::move(address)),
        timeout_(timeout),
        stub_(api::Agent::NewStub(
            grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<api::PrepareIncomingResponse> PrepareIncoming(
      const api::PrepareIncomingRequest& request) override {
    api::PrepareIncomingResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    api::PrepareIncomingRequest r = request;
    r.set_protocol_version(api::PROTOCOL_VERSION_1);
    grpc::Status s = stub_->PrepareIncoming(&context, r, &response);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("agent ", address_, " PrepareIncoming"));
    return response;
  }

  absl::Status FinishIncoming(const api::FinishIncomingRequest& request) override {
    api::FinishIncomingResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    api::FinishIncomingRequest r = request;
    r.set_protocol_version(api::PROTOCOL_VERSION_1);
    return FromGrpc(stub_->FinishIncoming(&context, r, &response),
                    absl::StrCat("agent ", address_, " FinishIncoming"));
  }

 private:
  void SetDeadline(grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
  }

  const std::string address_;
  const absl::Duration timeout_;
  std::unique_ptr<api::Agent::Stub> stub_;
};

grpc::Status CheckVersion(api::ProtocolVersion v) {
  if (v == api::PROTOCOL_VERSION_1) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      absl::StrCat("protocol version ", v, " is not supported (want ",
                                   api::PROTOCOL_VERSION_1, ")"));
}

}  // namespace

grpc::Status AgentPeerService::PrepareIncoming(grpc::ServerContext*,
                                               const api::PrepareIncomingRequest* request,
                                               api::PrepareIncomingResponse* response) {
  if (grpc::Status v = CheckVersion(request->protocol_version()); !v.ok()) return v;
  absl::StatusOr<api::PrepareIncomingResponse> r = local_.PrepareIncoming(*request);
  if (!r.ok()) return ToGrpc(r.status());
  *response = *std::move(r);
  response->set_protocol_version(api::PROTOCOL_VERSION_1);
  return grpc::Status::OK;
}

grpc::Status AgentPeerService::FinishIncoming(grpc::ServerContext*,
                                              const api::FinishIncomingRequest* request,
                                              api::FinishIncomingResponse* response) {
  if (grpc::Status v = CheckVersion(request->protocol_version()); !v.ok()) return v;
  response->set_protocol_version(api::PROTOCOL_VERSION_1);
  return ToGrpc(local_.FinishIncoming(*request));
}

absl::StatusOr<std::unique_ptr<MigrationPeer>> NewGrpcMigrationPeer(const std::string& address,
                                                                    absl::Duration timeout) {
  if (address.empty()) return absl::InvalidArgumentError("agent address is empty");
  return std::make_unique<GrpcMigrationPeer>(address, timeout);
}

}  // namespace autoscale::rpc
