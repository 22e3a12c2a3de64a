// The agent<->agent migration protocol over gRPC: serves any MigrationPeer (agent_peer.h), in the
// target node's agent. Requests of another protocol version are refused with FAILED_PRECONDITION
// before the peer sees them.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<rpc::Server> server,
//                    rpc::agent_peer::StartGrpcServer(agent, "0.0.0.0:10400"));
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscale/rpc/agent_peer/agent_peer.h"
#include "autoscale/rpc/server.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc::agent_peer {

// The target as one caller may use it, made for each call: `identity` is the first URI SAN of the
// caller's verified certificate ("spiffe://td/node/a"), "" over plaintext. The transport only
// authenticates; the agent decides (agent::Agent::ForCaller).
using PeerFor = std::function<std::shared_ptr<MigrationPeer>(const std::string& identity)>;

// Listens on `address` ("host:port", port 0 picks a free one, or "unix:/path").
// `security`: see tls.h (tests pass none: plaintext). Requests are limited to kMaxMessageBytes.
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(PeerFor peer_for,
                                                        const std::string& address,
                                                        const Security& security);
// Every caller gets `peer` (which must outlive the server) as it is.
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(
    MigrationPeer& peer, const std::string& address,
    const Security& security = Security::Plaintext());
inline constexpr int kMaxMessageBytes = 64 << 10;

}  // namespace autoscale::rpc::agent_peer
