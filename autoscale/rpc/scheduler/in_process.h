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

  absl::StatusOr<api::PermitResponse> Request(const api::PermitRequest& request) override;
  void RequestAsync(const api::PermitRequest& request,
                    std::function<void(absl::StatusOr<api::PermitResponse>)> done) override;
  absl::StatusOr<api::RegisterNodeResponse> RegisterNode(
      const api::RegisterNodeRequest& request) override;
  absl::StatusOr<api::MigrationOrdersResponse> GetMigrationOrders(
      const api::MigrationOrdersRequest& request) override;
  absl::StatusOr<api::MigrationResultResponse> ReportMigration(
      const api::MigrationResult& request) override;
  absl::StatusOr<api::PlaceVmResponse> PlaceVm(const api::PlaceVmRequest& request) override;
  absl::StatusOr<api::ReleaseVmResponse> ReleaseVm(const api::ReleaseVmRequest& request) override;
  absl::StatusOr<api::ListNodesResponse> ListNodes(const api::ListRequest& request) override;
  absl::StatusOr<api::ListVmsResponse> ListVms(const api::ListRequest& request) override;
  absl::StatusOr<api::StatusResponse> GetStatus(const api::StatusRequest& request) override;
  absl::StatusOr<api::UpdateNodeResponse> UpdateNode(
      const api::UpdateNodeRequest& request) override;
  absl::StatusOr<api::CordonNodeResponse> CordonNode(
      const api::CordonNodeRequest& request) override;
  absl::StatusOr<api::DrainNodeResponse> DrainNode(const api::DrainNodeRequest& request) override;
  absl::StatusOr<api::RemoveNodeResponse> RemoveNode(
      const api::RemoveNodeRequest& request) override;
  absl::StatusOr<api::UpdateVmBoundsResponse> UpdateVmBounds(
      const api::UpdateVmBoundsRequest& request) override;

 private:
  SchedulerService& server_;
};

}  // namespace autoscale::rpc::scheduler
