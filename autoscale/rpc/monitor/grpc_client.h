// A MonitorClient over gRPC (see monitor.h): one stream to a VM's monitor, the agent's calls
// matched to their replies by id, what the monitor sends on its own delivered on a reader thread.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<MonitorClient> client,
//                    ConnectGrpc("127.0.0.1:10301", {.vm = "vm1", .token = token}, callbacks,
//                                absl::Seconds(4), security));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/monitor/monitor.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc::monitor {

// Connects ("host:port" or "unix:/path") and negotiates the protocol version, within `timeout`.
// An unreachable monitor is UNAVAILABLE; one whose certificate is not `binding.vm`'s monitor, or
// that refuses this agent, PERMISSION_DENIED; errors start with "monitor at <address>".
// `security`: see tls.h (tests pass none: plaintext). `trust_domain`: the agent's (the VM's
// monitor is spiffe://<trust_domain>/vm/<vm>); empty: its own certificate's. The identity is
// checked after the handshake, not in it (as rpc::ChannelCredentials' server identity would), so
// that the error says which certificate was found there rather than "not reachable".
absl::StatusOr<std::unique_ptr<MonitorClient>> ConnectGrpc(
    const std::string& address, const AgentBinding& binding, MonitorClient::Callbacks callbacks,
    absl::Duration timeout, const Security& security = Security::Plaintext(),
    const std::string& trust_domain = "");

}  // namespace autoscale::rpc::monitor
