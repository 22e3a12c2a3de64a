// A MigrationPeer that is another node's agent, over gRPC (see agent_peer.h). Errors keep the
// target's status code and name the agent and the call ("agent 10.0.0.7:10400 PrepareIncoming:
// ...").
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/agent_peer/agent_peer.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc::agent_peer {

// The agent at `address` ("host:port" or "unix:/path"). Each call is bounded by `timeout`
// (starting a QEMU and waiting for a migrated VM to run take seconds). `security`: see tls.h
// (tests pass none: plaintext). `server_identity`: with TLS, what the agent's certificate must
// name ("spiffe://prod/node/b", the order's target node; "": any that the CA signed).
absl::StatusOr<std::unique_ptr<MigrationPeer>> NewGrpcClient(
    const std::string& address, absl::Duration timeout = absl::Seconds(60),
    const Security& security = Security::Plaintext(), const std::string& server_identity = "");

}  // namespace autoscale::rpc::agent_peer
