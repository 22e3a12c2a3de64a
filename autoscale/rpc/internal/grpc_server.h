// Starting a gRPC server for one protocol's service: what every protocol's StartGrpcServer does
// after adapting its interface to a grpc::Service.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "autoscale/rpc/server.h"
#include "autoscale/rpc/tls.h"
#include "grpcpp/impl/service_type.h"

namespace autoscale::rpc::internal {

// What a server accepts: messages up to `max_message_bytes` (a larger one is refused with
// RESOURCE_EXHAUSTED before it is parsed) and up to `max_streams` calls at once per connection.
struct Limits {
  int max_message_bytes = 4 << 10;
  int max_streams = 64;
};

// Listens on `address`: "host:port" (port 0 picks a free one) or "unix:/path" (a stale socket
// file there is replaced) and serves `service`, with `security` (tls.h). `what` ("scheduler")
// names the server in errors and logs.
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(std::string_view what,
                                                        const std::string& address,
                                                        std::unique_ptr<grpc::Service> service,
                                                        const Security& security, Limits limits);

}  // namespace autoscale::rpc::internal
