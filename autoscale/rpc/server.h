// rpc::Server: a running gRPC server of one protocol, as each protocol's StartGrpcServer returns
// it (rpc/scheduler/grpc_server.h, rpc/monitor/grpc_server.h, rpc/agent_peer/grpc_server.h), so
// that its users need no gRPC header.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<rpc::Server> server,
//                    rpc::scheduler::StartGrpcServer(handler, "127.0.0.1:0"));  // or "unix:/p"
//   std::string address = server->address();   // what clients dial: "127.0.0.1:41234"
//   ...
//   server->Shutdown(absl::Seconds(2));
#pragma once

#include <string>

#include "absl/time/time.h"

namespace autoscale::rpc {

class Server {
 public:
  // Shuts down at once if Shutdown was not called.
  virtual ~Server() = default;

  // What clients dial: "host:port" with the port chosen (a wildcard host is reached on
  // loopback), or "unix:/path".
  virtual const std::string& address() const = 0;
  // The TCP port listened on (0 for a unix socket).
  virtual int port() const = 0;
  // Refuses new calls, lets calls in flight finish for up to `grace`, then cancels the rest.
  // Calls after the first do nothing.
  virtual void Shutdown(absl::Duration grace) = 0;
};

}  // namespace autoscale::rpc
