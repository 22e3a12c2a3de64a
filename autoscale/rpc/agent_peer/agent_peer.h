// MigrationPeer: what a source node's agent asks of the target node's agent during a live
// migration (autoscale/api/agent.proto). The agent implements it for incoming VMs; the gRPC
// client (agent_peer_grpc.h) implements it for a remote agent.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/api/agent.pb.h"

namespace autoscale::rpc {

class MigrationPeer {
 public:
  virtual ~MigrationPeer() = default;
  // Starts an incoming VM for the request and returns where to send it.
  virtual absl::StatusOr<api::PrepareIncomingResponse> PrepareIncoming(
      const api::PrepareIncomingRequest& request) = 0;
  // How the migration ended: on success the target takes the VM over, otherwise it stops the
  // incoming VM.
  virtual absl::Status FinishIncoming(const api::FinishIncomingRequest& request) = 0;
};

}  // namespace autoscale::rpc
