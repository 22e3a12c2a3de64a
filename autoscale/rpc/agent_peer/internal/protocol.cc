#include "autoscale/rpc/agent_peer/internal/protocol.h"

#include "absl/strings/str_cat.h"

namespace autoscale::rpc::agent_peer::internal {

absl::Status CheckVersion(api::v1::ProtocolVersion v) {
  if (v == api::v1::PROTOCOL_VERSION_1) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "protocol version ", v, " is not supported (want ", api::v1::PROTOCOL_VERSION_1, ")"));
}

}  // namespace autoscale::rpc::agent_peer::internal
