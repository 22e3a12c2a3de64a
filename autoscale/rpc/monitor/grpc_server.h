// The monitor protocol over gRPC: serves any MonitorService (monitor.h), one bidirectional
// stream per agent.
//
//   monitor::AgentLink link(runner->monitor(), metrics, {});
//   ASSIGN_OR_RETURN(std::unique_ptr<rpc::Server> server,
//                    rpc::monitor::StartGrpcServer(link, "127.0.0.1:10301"));
//   ...
//   link.Disconnect();
//   server->Shutdown(absl::Seconds(2));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscale/rpc/monitor/monitor.h"
#include "autoscale/rpc/server.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc::monitor {

// Listens on `address` ("host:port", port 0 picks a free one, or "unix:/path"). `service` must
// outlive the server. `security`: see tls.h (tests pass none: plaintext).
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(
    MonitorService& service, const std::string& address,
    const Security& security = Security::Plaintext());

}  // namespace autoscale::rpc::monitor
