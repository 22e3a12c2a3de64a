#include "autoscale/rpc/scheduler_client.h"

#include "autoscale/rpc/scheduler_handler.h"

namespace autoscale::rpc {

absl::StatusOr<api::PermitResponse> InProcessSchedulerClient::Request(
    const api::PermitRequest& request) {
  return handler_.Request(WithVersion(request));
}

absl::StatusOr<api::RegisterNodeResponse> InProcessSchedulerClient::RegisterNode(
    const api::RegisterNodeRequest& request) {
  return handler_.RegisterNode(WithVersion(request));
}

absl::StatusOr<std::vector<api::MigrationOrder>> InProcessSchedulerClient::GetMigrationOrders(
    const std::string& node) {
  api::MigrationOrdersRequest request;
  request.set_node(node);
  absl::StatusOr<api::MigrationOrdersResponse> r =
      handler_.GetMigrationOrders(WithVersion(request));
  if (!r.ok()) return r.status();
  return std::vector<api::MigrationOrder>(r->orders().begin(), r->orders().end());
}

absl::Status InProcessSchedulerClient::ReportMigration(const api::MigrationResult& result) {
  return handler_.ReportMigration(WithVersion(result)).status();
}

}  // namespace autoscale::rpc
