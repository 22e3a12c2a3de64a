#include "autoscale/rpc/agent_peer/in_process.h"

#include <utility>

#include "autoscale/base/status_macros.h"
#include "autoscale/rpc/agent_peer/internal/protocol.h"

namespace autoscale::rpc::agent_peer {

absl::StatusOr<api::v1::PrepareIncomingResponse> InProcessClient::PrepareIncoming(
    const api::v1::PrepareIncomingRequest& request) {
  const api::v1::PrepareIncomingRequest sent = internal::Versioned(request);
  RETURN_IF_ERROR(internal::CheckVersion(sent.protocol_version()));
  ASSIGN_OR_RETURN(api::v1::PrepareIncomingResponse response, target_.PrepareIncoming(sent));
  return internal::Versioned(std::move(response));
}

absl::Status InProcessClient::FinishIncoming(const api::v1::FinishIncomingRequest& request) {
  const api::v1::FinishIncomingRequest sent = internal::Versioned(request);
  RETURN_IF_ERROR(internal::CheckVersion(sent.protocol_version()));
  return target_.FinishIncoming(sent);
}

}  // namespace autoscale::rpc::agent_peer
