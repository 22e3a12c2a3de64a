// Starting a gRPC server for one protocol's service: what every protocol's StartGrpcServer does
// after adapting its interface to a grpc::Service.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "autoscale/rpc/server.h"
#include "grpcpp/impl/service_type.h"

namespace autoscale::rpc::internal {

// Listens on `address`: "host:port" (port 0 picks a free one) or "unix:/path" (a stale socket
// file there is replaced) and serves `service`. `what` ("scheduler") names the server in errors
// and logs.
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(std::string_view what,
                                                        const std::string& address,
                                                        std::unique_ptr<grpc::Service> service);

}  // namespace autoscale::rpc::internal
