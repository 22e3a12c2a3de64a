#include "autoscale/rpc/agent_peer/internal/protocol.h"

#include "absl/strings/str_cat.h"

namespace autoscale::rpc::agent_peer::internal {

absl::Status CheckVersion(api::ProtocolVersion v) {
  if (v == api::PROTOCOL_VERSION_1) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "protocol version ", v, " is not supported (want ", api::PROTOCOL_VERSION_1, ")"));
}

}  // namespace autoscale::rpc::agent_peer::internal
