#include "autoscale/rpc/scheduler/in_process.h"

#include <utility>

namespace autoscale::rpc::scheduler {

absl::StatusOr<api::v1::PermitResponse> InProcessClient::Request(
    const api::v1::PermitRequest& request) {
  return server_.Request(WithVersion(request));
}

void InProcessClient::RequestAsync(
    const api::v1::PermitRequest& request,
    std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) {
  server_.RequestAsync(WithVersion(request), std::move(done));
}

absl::StatusOr<api::v1::RegisterNodeResponse> InProcessClient::RegisterNode(
    const api::v1::RegisterNodeRequest& request) {
  return server_.RegisterNode(WithVersion(request));
}

absl::StatusOr<api::v1::MigrationOrdersResponse> InProcessClient::GetMigrationOrders(
    const api::v1::MigrationOrdersRequest& request) {
  return server_.GetMigrationOrders(WithVersion(request));
}

absl::StatusOr<api::v1::MigrationResultResponse> InProcessClient::ReportMigration(
    const api::v1::MigrationResult& request) {
  return server_.ReportMigration(WithVersion(request));
}

absl::StatusOr<api::v1::PlaceVmResponse> InProcessClient::PlaceVm(
    const api::v1::PlaceVmRequest& request) {
  return server_.PlaceVm(WithVersion(request));
}

absl::StatusOr<api::v1::ReleaseVmResponse> InProcessClient::ReleaseVm(
    const api::v1::ReleaseVmRequest& request) {
  return server_.ReleaseVm(WithVersion(request));
}

absl::StatusOr<api::v1::ListNodesResponse> InProcessClient::ListNodes(
    const api::v1::ListRequest& request) {
  return server_.ListNodes(WithVersion(request));
}

absl::StatusOr<api::v1::ListVmsResponse> InProcessClient::ListVms(
    const api::v1::ListRequest& request) {
  return server_.ListVms(WithVersion(request));
}

absl::StatusOr<api::v1::StatusResponse> InProcessClient::GetStatus(
    const api::v1::StatusRequest& request) {
  return server_.GetStatus(WithVersion(request));
}

absl::StatusOr<api::v1::UpdateNodeResponse> InProcessClient::UpdateNode(
    const api::v1::UpdateNodeRequest& request) {
  return server_.UpdateNode(WithVersion(request));
}

absl::StatusOr<api::v1::CordonNodeResponse> InProcessClient::CordonNode(
    const api::v1::CordonNodeRequest& request) {
  return server_.CordonNode(WithVersion(request));
}

absl::StatusOr<api::v1::DrainNodeResponse> InProcessClient::DrainNode(
    const api::v1::DrainNodeRequest& request) {
  return server_.DrainNode(WithVersion(request));
}

absl::StatusOr<api::v1::RemoveNodeResponse> InProcessClient::RemoveNode(
    const api::v1::RemoveNodeRequest& request) {
  return server_.RemoveNode(WithVersion(request));
}

absl::StatusOr<api::v1::UpdateVmBoundsResponse> InProcessClient::UpdateVmBounds(
    const api::v1::UpdateVmBoundsRequest& request) {
  return server_.UpdateVmBounds(WithVersion(request));
}

}  // namespace autoscale::rpc::scheduler
