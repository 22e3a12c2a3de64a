// The protocol version handling both transports of the agent peer protocol share: clients send
// PROTOCOL_VERSION_1, the target refuses any other version before its agent sees the request.
#pragma once

#include "absl/status/status.h"
#include "autoscale/api/resources.pb.h"

namespace autoscale::rpc::agent_peer::internal {

// Sets PROTOCOL_VERSION_1 on a request or an answer.
template <typename M>
M Versioned(M m) {
  m.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  return m;
}

// FAILED_PRECONDITION unless `v` is PROTOCOL_VERSION_1.
absl::Status CheckVersion(api::v1::ProtocolVersion v);

}  // namespace autoscale::rpc::agent_peer::internal
