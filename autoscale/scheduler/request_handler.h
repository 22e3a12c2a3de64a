// RequestHandler: the scheduler's answers to the scheduler protocol (rpc::scheduler::
// SchedulerService, autoscale/api/scheduler.proto) over a Ledger: it checks each request,
// converts it to the ledger's terms and the answer back. Any transport serves it (the gRPC
// server, the in-process client), so a request is checked and answered the same way wherever it
// comes from.
//
// Every request must carry PROTOCOL_VERSION_1 (else FAILED_PRECONDITION); malformed values get
// INVALID_ARGUMENT (names and addresses longer than ledger::kMaxNameBytes too, before anything
// else looks at them), unknown nodes and VMs NOT_FOUND, and nothing changes. Errors name the call
// and the field: "PermitRequest vm7 on node-a: resources 300m/1GiB is not a whole number of
// compute units of 250m/1GiB". No authorization here: the transport's caller identity is checked
// by the caller of these methods.
//
//   RequestHandler handler(ledger, /*default_compute_unit=*/{250, 1 << 30});
//   absl::StatusOr<api::v1::PermitResponse> permit = handler.Request(request);
//   ASSIGN_OR_RETURN(auto server, rpc::scheduler::StartGrpcServer(handler, "127.0.0.1:10299"));
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/api/scheduler.pb.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::scheduler {

class RequestHandler final : public rpc::scheduler::SchedulerService {
 public:
  // `default_compute_unit` is used for placements that name none.
  RequestHandler(ledger::Ledger& ledger, core::Resources default_compute_unit);

  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& request) override;
  // Answers once the permit is durable: `done` may run before this returns or later on the
  // ledger store's thread.
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

  // Calls answered so far, by method and status code (for metrics); zero counts left out.
  struct CallCount {
    std::string method;
    absl::StatusCode code = absl::StatusCode::kOk;
    uint64_t count = 0;
  };
  std::vector<CallCount> Counts() const;

 private:
  enum Method {
    kRequest,
    kRegisterNode,
    kPlaceVm,
    kReleaseVm,
    kGetMigrationOrders,
    kReportMigration,
    kListNodes,
    kListVms,
    kGetStatus,
    kUpdateNode,
    kCordonNode,
    kDrainNode,
    kRemoveNode,
    kUpdateVmBounds,
    kMethods
  };
  static constexpr int kCodes = 17;

  template <typename T>
  absl::StatusOr<T> Count(Method m, absl::StatusOr<T> result);

  ledger::Ledger& ledger_;
  const core::Resources default_compute_unit_;
  std::array<std::array<std::atomic<uint64_t>, kCodes>, kMethods> counts_{};
};

// Conversions between the ledger's types and the protocol's.
api::v1::NodeState ToProto(const ledger::NodeInfo& node);
api::v1::VmState ToProto(const ledger::VmInfo& vm);
api::v1::MigrationOrder ToProto(const ledger::MigrationOrder& order);

}  // namespace autoscale::scheduler
