#include "autoscale/rpc/agent_peer/in_process.h"

#include <utility>

#include "autoscale/base/status_macros.h"
#include "autoscale/rpc/agent_peer/internal/protocol.h"

namespace autoscale::rpc::agent_peer {

absl::StatusOr<api::PrepareIncomingResponse> InProcessClient::PrepareIncoming(
    const api::PrepareIncomingRequest& request) {
  const api::PrepareIncomingRequest sent = internal::Versioned(request);
  RETURN_IF_ERROR(internal::CheckVersion(sent.protocol_version()));
  ASSIGN_OR_RETURN(api::PrepareIncomingResponse response, target_.PrepareIncoming(sent));
  return internal::Versioned(std::move(response));
}

absl::Status InProcessClient::FinishIncoming(const api::FinishIncomingRequest& request) {
  const api::FinishIncomingRequest sent = internal::Versioned(request);
  RETURN_IF_ERROR(internal::CheckVersion(sent.protocol_version()));
  return target_.FinishIncoming(sent);
}

}  // namespace autoscale::rpc::agent_peer
