// The agent<->agent migration protocol (autoscale/api/agent.proto) in its own terms:
// MigrationPeer is what a source node's agent asks of the target node's agent during a live
// migration, api messages in and out. Its implementations:
//   - agent::Agent (autoscale/agent): this node's agent, as a migration target;
//   - NewGrpcClient (grpc_client.h): another node's agent, over gRPC;
//   - InProcessClient (in_process.h): a MigrationPeer in this process, called as the gRPC client
//     calls one (same version handling, same answers, no network): tests and simulations.
// StartGrpcServer (grpc_server.h) serves any MigrationPeer over gRPC.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<MigrationPeer> target, NewGrpcClient("10.0.0.7:10400"));
//   ASSIGN_OR_RETURN(api::v1::PrepareIncomingResponse r, target->PrepareIncoming(prepare));
//   ... send the VM to r.uri() ...
//   RETURN_IF_ERROR(target->FinishIncoming(finish));
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/api/agent.pb.h"

namespace autoscale::rpc::agent_peer {

class MigrationPeer {
 public:
  virtual ~MigrationPeer() = default;
  // Starts an incoming VM for the request and returns where to send it.
  virtual absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
      const api::v1::PrepareIncomingRequest& request) = 0;
  // How the migration ended: on success the target takes the VM over, otherwise it stops the
  // incoming VM. (The answer carries nothing but the protocol version.)
  virtual absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& request) = 0;
};

}  // namespace autoscale::rpc::agent_peer
