#include "autoscale/rpc/agent_peer/grpc_server.h"

#include <utility>

#include "autoscale/api/agent.grpc.pb.h"
#include "autoscale/rpc/agent_peer/internal/protocol.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/grpc_status.h"
#include "autoscale/rpc/internal/grpc_server.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::agent_peer {
namespace {

class Service final : public api::v1::Agent::Service {
 public:
  explicit Service(PeerFor peer_for) : peer_for_(std::move(peer_for)) {}

  grpc::Status PrepareIncoming(grpc::ServerContext* context,
                               const api::v1::PrepareIncomingRequest* request,
                               api::v1::PrepareIncomingResponse* response) override {
    if (absl::Status v = internal::CheckVersion(request->protocol_version()); !v.ok()) {
      return ToGrpc(v);
    }
    absl::StatusOr<api::v1::PrepareIncomingResponse> r =
        peer_for_(PeerIdentity(*context))->PrepareIncoming(*request);
    if (!r.ok()) return ToGrpc(r.status());
    *response = internal::Versioned(*std::move(r));
    return grpc::Status::OK;
  }

  grpc::Status FinishIncoming(grpc::ServerContext* context,
                              const api::v1::FinishIncomingRequest* request,
                              api::v1::FinishIncomingResponse* response) override {
    if (absl::Status v = internal::CheckVersion(request->protocol_version()); !v.ok()) {
      return ToGrpc(v);
    }
    *response = internal::Versioned(api::v1::FinishIncomingResponse());
    return ToGrpc(peer_for_(PeerIdentity(*context))->FinishIncoming(*request));
  }

 private:
  const PeerFor peer_for_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(PeerFor peer_for,
                                                        const std::string& address,
                                                        const Security& security) {
  return rpc::internal::StartGrpcServer("agent", address,
                                        std::make_unique<Service>(std::move(peer_for)), security,
                                        {.max_message_bytes = kMaxMessageBytes});
}

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(MigrationPeer& peer,
                                                        const std::string& address,
                                                        const Security& security) {
  // Not owned: every call gets `peer` itself.
  std::shared_ptr<MigrationPeer> shared(&peer, [](MigrationPeer*) {});
  return StartGrpcServer([shared](const std::string&) { return shared; }, address, security);
}

}  // namespace autoscale::rpc::agent_peer
