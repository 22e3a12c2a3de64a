#include "autoscale/rpc/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace autoscale::rpc {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", status.error_message()));
}

}  // namespace autoscale::rpc
