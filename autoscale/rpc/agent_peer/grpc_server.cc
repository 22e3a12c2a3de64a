#include "autoscale/rpc/agent_peer/grpc_server.h"

#include <utility>

#include "autoscale/api/agent.grpc.pb.h"
#include "autoscale/rpc/agent_peer/internal/protocol.h"
#include "autoscale/rpc/grpc_status.h"
#include "autoscale/rpc/internal/grpc_server.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::agent_peer {
namespace {

class Service final : public api::v1::Agent::Service {
 public:
  explicit Service(MigrationPeer& local) : local_(local) {}

  grpc::Status PrepareIncoming(grpc::ServerContext*, const api::v1::PrepareIncomingRequest* request,
                               api::v1::PrepareIncomingResponse* response) override {
    if (absl::Status v = internal::CheckVersion(request->protocol_version()); !v.ok()) {
      return ToGrpc(v);
    }
    absl::StatusOr<api::v1::PrepareIncomingResponse> r = local_.PrepareIncoming(*request);
    if (!r.ok()) return ToGrpc(r.status());
    *response = internal::Versioned(*std::move(r));
    return grpc::Status::OK;
  }

  grpc::Status FinishIncoming(grpc::ServerContext*, const api::v1::FinishIncomingRequest* request,
                              api::v1::FinishIncomingResponse* response) override {
    if (absl::Status v = internal::CheckVersion(request->protocol_version()); !v.ok()) {
      return ToGrpc(v);
    }
    *response = internal::Versioned(api::v1::FinishIncomingResponse());
    return ToGrpc(local_.FinishIncoming(*request));
  }

 private:
  MigrationPeer& local_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(MigrationPeer& peer,
                                                        const std::string& address,
                                                        const Security& security) {
  return rpc::internal::StartGrpcServer("agent", address, std::make_unique<Service>(peer), security,
                                        {.max_message_bytes = kMaxMessageBytes});
}

}  // namespace autoscale::rpc::agent_peer
