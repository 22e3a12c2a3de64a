// The scheduler protocol (autoscale/api/scheduler.proto) in its own terms: SchedulerService is
// what a scheduler answers, api messages in and out. Its implementations:
//   - scheduler::RequestHandler (autoscale/scheduler): the scheduler itself, over its ledger;
//   - NewGrpcClient (grpc_client.h): a scheduler daemon, over gRPC;
//   - InProcessClient (in_process.h): a SchedulerService in this process, called as a client
//     calls one over the network (same checks and answers, no network): the simulator and tests.
// StartGrpcServer (grpc_server.h) serves any SchedulerService over gRPC.
//
// The agent uses Request, RegisterNode, GetMigrationOrders and ReportMigration (and UpdateNode,
// UpdateVmBounds when its configuration changes); operators (schedctl) and orchestrators the
// admin calls below them.
//
//   std::unique_ptr<SchedulerService> scheduler = *NewGrpcClient("unix:/run/sched.sock");
//   api::v1::PermitRequest req;   // node, vm, compute unit, resources, last permit
//   absl::StatusOr<api::v1::PermitResponse> permit = scheduler->Request(req);
//   if (permit.ok() && permit->has_migration()) ...  // stop resizing; the order is for us
//
// Every request carries a protocol version; the clients send one left unspecified as
// PROTOCOL_VERSION_1 (WithVersion), and the scheduler refuses others with FAILED_PRECONDITION.
//
// Schedulers that run as an active/standby group (scheduler::HaScheduler) answer only on the
// leader; a standby answers UNAVAILABLE naming the leader (NotLeaderError), and the gRPC client
// sends the call there (grpc_client.h).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "autoscale/api/scheduler.pb.h"

namespace autoscale::rpc::scheduler {

class SchedulerService {
 public:
  virtual ~SchedulerService() = default;

  // Asks for (grow) or reports (shrink, unchanged) a VM's resources; returns its permit.
  virtual absl::StatusOr<api::v1::PermitResponse> Request(
      const api::v1::PermitRequest& request) = 0;
  // The same, answering through `done`: maybe before returning, maybe later from another
  // thread once the permit is durable, so a server holds no thread per waiting request. By
  // default it calls Request.
  virtual void RequestAsync(const api::v1::PermitRequest& request,
                            std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) {
    done(Request(request));
  }
  // Registers (or updates) a node.
  virtual absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
      const api::v1::RegisterNodeRequest& request) = 0;
  // The migrations a node's agent must carry out as the source.
  virtual absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
      const api::v1::MigrationOrdersRequest& request) = 0;
  // How a migration ended.
  virtual absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
      const api::v1::MigrationResult& request) = 0;

  // Admin calls: placing and releasing VMs, and reads.
  virtual absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(
      const api::v1::PlaceVmRequest& request) = 0;
  virtual absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(
      const api::v1::ReleaseVmRequest& request) = 0;
  virtual absl::StatusOr<api::v1::ListNodesResponse> ListNodes(
      const api::v1::ListRequest& request) = 0;
  virtual absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest& request) = 0;
  virtual absl::StatusOr<api::v1::StatusResponse> GetStatus(
      const api::v1::StatusRequest& request) = 0;

  // Node lifecycle and bounds (admin; an agent updates its own node and VMs when its
  // configuration changes). A service that does not offer them answers UNIMPLEMENTED.
  virtual absl::StatusOr<api::v1::UpdateNodeResponse> UpdateNode(
      const api::v1::UpdateNodeRequest&) {
    return absl::UnimplementedError("UpdateNode");
  }
  virtual absl::StatusOr<api::v1::CordonNodeResponse> CordonNode(
      const api::v1::CordonNodeRequest&) {
    return absl::UnimplementedError("CordonNode");
  }
  virtual absl::StatusOr<api::v1::DrainNodeResponse> DrainNode(const api::v1::DrainNodeRequest&) {
    return absl::UnimplementedError("DrainNode");
  }
  virtual absl::StatusOr<api::v1::RemoveNodeResponse> RemoveNode(
      const api::v1::RemoveNodeRequest&) {
    return absl::UnimplementedError("RemoveNode");
  }
  virtual absl::StatusOr<api::v1::UpdateVmBoundsResponse> UpdateVmBounds(
      const api::v1::UpdateVmBoundsRequest&) {
    return absl::UnimplementedError("UpdateVmBounds");
  }
};

// UNAVAILABLE with `message`, naming `leader` (the address clients reach the leader at; empty:
// none is known) in a way LeaderOf reads back, also across gRPC (the trailing metadata
// kLeaderMetadata).
absl::Status NotLeaderError(std::string_view message, std::string_view leader);
// The leader a NotLeaderError names, or "".
std::string LeaderOf(const absl::Status& status);
inline constexpr char kLeaderMetadata[] = "autoscale-leader";

// Sets PROTOCOL_VERSION_1 on a message whose version is unspecified.
template <typename M>
M WithVersion(M m) {
  if (m.protocol_version() == api::v1::PROTOCOL_VERSION_UNSPECIFIED) {
    m.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  }
  return m;
}

}  // namespace autoscale::rpc::scheduler
