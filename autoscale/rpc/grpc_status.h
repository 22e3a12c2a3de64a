// Converting between absl::Status and grpc::Status (the codes are the same numbers).
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace autoscale::rpc {

grpc::Status ToGrpc(const absl::Status& status);
// `what` ("scheduler unix:/run/s.sock Request") is put before the message.
absl::Status FromGrpc(const grpc::Status& status, std::string_view what);

}  // namespace autoscale::rpc
