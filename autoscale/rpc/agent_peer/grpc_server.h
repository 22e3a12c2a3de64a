// The agent<->agent migration protocol over gRPC: a service that serves a local MigrationPeer (the
// agent), and a client that is a MigrationPeer for a remote agent.
//
//   AgentPeerService service(agent);                    // in the target node's agent
//   builder.RegisterService(&service);
//   ASSIGN_OR_RETURN(auto peer, NewGrpcMigrationPeer("127.0.0.1:10400"));  // in the source's
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/agent.grpc.pb.h"
#include "autoscale/rpc/agent_peer.h"

namespace autoscale::rpc {

class AgentPeerService final : public api::Agent::Service {
 public:
  explicit AgentPeerService(MigrationPeer& local) : local_(local) {}

  grpc::Status PrepareIncoming(grpc::ServerContext* context,
                               const api::PrepareIncomingRequest* request,
                               api::PrepareIncomingResponse* response) override;
  grpc::Status FinishIncoming(grpc::ServerContext* context,
                              const api::FinishIncomingRequest* request,
                              api::FinishIncomingResponse* response) override;

 private:
  MigrationPeer& local_;
};

// A MigrationPeer for the agent at `address` ("host:port" or "unix:/path"). Each call is bounded
// by `timeout` (starting a QEMU and waiting for a migrated VM to run take seconds).
absl::StatusOr<std::unique_ptr<MigrationPeer>> NewGrpcMigrationPeer(
    const std::string& address, absl::Duration timeout = absl::Seconds(60));

}  // namespace autoscale::rpc
