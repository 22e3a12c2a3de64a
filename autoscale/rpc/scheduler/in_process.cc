#include "autoscale/rpc/scheduler/in_process.h"

#include <utility>

namespace autoscale::rpc::scheduler {

absl::StatusOr<api::PermitResponse> InProcessClient::Request(const api::PermitRequest& request) {
  return server_.Request(WithVersion(request));
}

void InProcessClient::RequestAsync(const api::PermitRequest& request,
                                   std::function<void(absl::StatusOr<api::PermitResponse>)> done) {
  server_.RequestAsync(WithVersion(request), std::move(done));
}

absl::StatusOr<api::RegisterNodeResponse> InProcessClient::RegisterNode(
    const api::RegisterNodeRequest& request) {
  return server_.RegisterNode(WithVersion(request));
}

absl::StatusOr<api::MigrationOrdersResponse> InProcessClient::GetMigrationOrders(
    const api::MigrationOrdersRequest& request) {
  return server_.GetMigrationOrders(WithVersion(request));
}

absl::StatusOr<api::MigrationResultResponse> InProcessClient::ReportMigration(
    const api::MigrationResult& request) {
  return server_.ReportMigration(WithVersion(request));
}

absl::StatusOr<api::PlaceVmResponse> InProcessClient::PlaceVm(const api::PlaceVmRequest& request) {
  return server_.PlaceVm(WithVersion(request));
}

absl::StatusOr<api::ReleaseVmResponse> InProcessClient::ReleaseVm(
    const api::ReleaseVmRequest& request) {
  return server_.ReleaseVm(WithVersion(request));
}

absl::StatusOr<api::ListNodesResponse> InProcessClient::ListNodes(const api::ListRequest& request) {
  return server_.ListNodes(WithVersion(request));
}

absl::StatusOr<api::ListVmsResponse> InProcessClient::ListVms(const api::ListRequest& request) {
  return server_.ListVms(WithVersion(request));
}

absl::StatusOr<api::StatusResponse> InProcessClient::GetStatus(const api::StatusRequest& request) {
  return server_.GetStatus(WithVersion(request));
}

absl::StatusOr<api::UpdateNodeResponse> InProcessClient::UpdateNode(
    const api::UpdateNodeRequest& request) {
  return server_.UpdateNode(WithVersion(request));
}

absl::StatusOr<api::CordonNodeResponse> InProcessClient::CordonNode(
    const api::CordonNodeRequest& request) {
  return server_.CordonNode(WithVersion(request));
}

absl::StatusOr<api::DrainNodeResponse> InProcessClient::DrainNode(
    const api::DrainNodeRequest& request) {
  return server_.DrainNode(WithVersion(request));
}

absl::StatusOr<api::RemoveNodeResponse> InProcessClient::RemoveNode(
    const api::RemoveNodeRequest& request) {
  return server_.RemoveNode(WithVersion(request));
}

absl::StatusOr<api::UpdateVmBoundsResponse> InProcessClient::UpdateVmBounds(
    const api::UpdateVmBoundsRequest& request) {
  return server_.UpdateVmBounds(WithVersion(request));
}

}  // namespace autoscale::rpc::scheduler
