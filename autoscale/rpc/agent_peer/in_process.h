// InProcessClient: a MigrationPeer in this process, called the way the gRPC client calls a remote
// agent: requests go out with PROTOCOL_VERSION_1, the version is checked as the gRPC server checks
// it, and the answers and errors are the target's. transport_test holds it to the gRPC client.
//
//   rpc::agent_peer::InProcessClient target(target_agent);
//   ASSIGN_OR_RETURN(api::v1::PrepareIncomingResponse r, target.PrepareIncoming(prepare));
#pragma once

#include "autoscale/rpc/agent_peer/agent_peer.h"

namespace autoscale::rpc::agent_peer {

class InProcessClient final : public MigrationPeer {
 public:
  // `target` must outlive the client.
  explicit InProcessClient(MigrationPeer& target) : target_(target) {}

  absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
      const api::v1::PrepareIncomingRequest& request) override;
  absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& request) override;

 private:
  MigrationPeer& target_;
};

}  // namespace autoscale::rpc::agent_peer
