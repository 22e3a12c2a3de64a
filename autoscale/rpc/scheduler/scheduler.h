// SchedulerClient: how an agent talks to the scheduler (a seam). Two implementations:
//   - NewGrpcSchedulerClient (scheduler_grpc_client.h): over gRPC to a scheduler daemon;
//   - InProcessSchedulerClient (below): straight into a SchedulerHandler in this process, for
//     the simulator and tests. Same checks and answers, no network.
//
// Requests left with PROTOCOL_VERSION_UNSPECIFIED are sent as PROTOCOL_VERSION_1.
//
//   std::unique_ptr<SchedulerClient> client = *NewGrpcSchedulerClient("unix:/run/sched.sock");
//   api::PermitRequest req;   // node, vm, compute unit, resources, last permit
//   absl::StatusOr<api::PermitResponse> permit = client->Request(req);
//   if (permit.ok() && permit->has_migration()) ...  // stop resizing; the order is for us
//   for (const api::MigrationOrder& order : *client->GetMigrationOrders("node-a")) ...
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/api/scheduler.pb.h"

namespace autoscale::rpc {

class SchedulerHandler;

class SchedulerClient {
 public:
  virtual ~SchedulerClient() = default;
  // Asks for (grow) or reports (shrink, unchanged) a VM's resources; returns its permit.
  virtual absl::StatusOr<api::PermitResponse> Request(const api::PermitRequest& request) = 0;
  // Registers (or updates) the agent's node.
  virtual absl::StatusOr<api::RegisterNodeResponse> RegisterNode(
      const api::RegisterNodeRequest& request) = 0;
  // The migrations this node's agent must carry out as the source.
  virtual absl::StatusOr<std::vector<api::MigrationOrder>> GetMigrationOrders(
      const std::string& node) = 0;
  // How a migration ended.
  virtual absl::Status ReportMigration(const api::MigrationResult& result) = 0;
};

class InProcessSchedulerClient : public SchedulerClient {
 public:
  explicit InProcessSchedulerClient(SchedulerHandler& handler) : handler_(handler) {}

  absl::StatusOr<api::PermitResponse> Request(const api::PermitRequest& request) override;
  absl::StatusOr<api::RegisterNodeResponse> RegisterNode(
      const api::RegisterNodeRequest& request) override;
  absl::StatusOr<std::vector<api::MigrationOrder>> GetMigrationOrders(
      const std::string& node) override;
  absl::Status ReportMigration(const api::MigrationResult& result) override;

 private:
  SchedulerHandler& handler_;
};

// Sets PROTOCOL_VERSION_1 on a message whose version is unspecified.
template <typename M>
M WithVersion(M m) {
  if (m.protocol_version() == api::PROTOCOL_VERSION_UNSPECIFIED) {
    m.set_protocol_version(api::PROTOCOL_VERSION_1);
  }
  return m;
}

}  // namespace autoscale::rpc
