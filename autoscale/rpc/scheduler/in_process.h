// InProcessClient: a SchedulerService in this process, called the way the gRPC client calls a
// remote one: requests left without a protocol version are sent as PROTOCOL_VERSION_1, and the
// answers and errors are the server's. For the simulator and tests; transport_test holds it to
// the gRPC client's answers.
//
//   scheduler::RequestHandler handler(ledger, compute_unit);
//   rpc::scheduler::InProcessClient client(handler);
//   agent::Agent agent(options, client, ...);
//
// Its methods are virtual so a test can wrap one call (record it, fail it) and pass the rest on.
#pragma once

#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::rpc::scheduler {

class InProcessClient : public SchedulerService {
 public:
  // `server` must outlive the client.
  explicit InProcessClient(SchedulerService& server) : server_(server) {}

  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& request) override;
  void RequestAsync(const api::v1::PermitRequest& request,
                    std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) override;
  absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
      const api::v1::RegisterNodeRequest& request) override;
  absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
      const api::v1::MigrationOrdersRequest& request) override;
  absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
      const api::v1::MigrationResult& request) override;
  absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(const api::v1::PlaceVmRequest& request) override;
  absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(
      const api::v1::ReleaseVmRequest& request) override;
  absl::StatusOr<api::v1::ListNodesResponse> ListNodes(
      const api::v1::ListRequest& request) override;
  absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest& request) override;
  absl::StatusOr<api::v1::StatusResponse> GetStatus(const api::v1::StatusRequest& request) override;
  absl::StatusOr<api::v1::UpdateNodeResponse> UpdateNode(
      const api::v1::UpdateNodeRequest& request) override;
  absl::StatusOr<api::v1::CordonNodeResponse> CordonNode(
      const api::v1::CordonNodeRequest& request) override;
  absl::StatusOr<api::v1::DrainNodeResponse> DrainNode(
      const api::v1::DrainNodeRequest& request) override;
  absl::StatusOr<api::v1::RemoveNodeResponse> RemoveNode(
      const api::v1::RemoveNodeRequest& request) override;
  absl::StatusOr<api::v1::UpdateVmBoundsResponse> UpdateVmBounds(
      const api::v1::UpdateVmBoundsRequest& request) override;

 private:
  SchedulerService& server_;
};

}  // namespace autoscale::rpc::scheduler
