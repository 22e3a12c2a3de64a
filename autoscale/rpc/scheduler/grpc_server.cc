#include "autoscale/rpc/scheduler/grpc_server.h"

#include <string>
#include <utility>

#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/rpc/grpc_status.h"
#include "autoscale/rpc/internal/grpc_server.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::scheduler {
namespace {

// A standby's error names the leader in the trailing metadata, where the client finds it.
template <typename T>
grpc::Status Reply(grpc::CallbackServerContext* context, absl::StatusOr<T> result, T* response) {
  if (!result.ok()) {
    if (std::string leader = LeaderOf(result.status()); !leader.empty()) {
      context->AddTrailingMetadata(kLeaderMetadata, leader);
    }
    return ToGrpc(result.status());
  }
  *response = *std::move(result);
  return grpc::Status::OK;
}

// Every method uses the callback API, so the server needs no thread pool of its own: agent
// requests finish when their permit is durable (from the log's writer thread); the rare
// structural calls (placement, registration, migrations) answer before returning.
class Service final : public api::Scheduler::CallbackService {
 public:
  explicit Service(SchedulerService& service) : service_(service) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* context,
                                    const api::PermitRequest* request,
                                    api::PermitResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    service_.RequestAsync(*request,
                          [context, reactor, response](absl::StatusOr<api::PermitResponse> r) {
                            reactor->Finish(Reply(context, std::move(r), response));
                          });
    return reactor;
  }
  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* context,
                                         const api::RegisterNodeRequest* request,
                                         api::RegisterNodeResponse* response) override {
    return Done(context, Reply(context, service_.RegisterNode(*request), response));
  }
  grpc::ServerUnaryReactor* PlaceVm(grpc::CallbackServerContext* context,
                                    const api::PlaceVmRequest* request,
                                    api::PlaceVmResponse* response) override {
    return Done(context, Reply(context, service_.PlaceVm(*request), response));
  }
  grpc::ServerUnaryReactor* ReleaseVm(grpc::CallbackServerContext* context,
                                      const api::ReleaseVmRequest* request,
                                      api::ReleaseVmResponse* response) override {
    return Done(context, Reply(context, service_.ReleaseVm(*request), response));
  }
  grpc::ServerUnaryReactor* GetMigrationOrders(grpc::CallbackServerContext* context,
                                               const api::MigrationOrdersRequest* request,
                                               api::MigrationOrdersResponse* response) override {
    return Done(context, Reply(context, service_.GetMigrationOrders(*request), response));
  }
  grpc::ServerUnaryReactor* ReportMigration(grpc::CallbackServerContext* context,
                                            const api::MigrationResult* request,
                                            api::MigrationResultResponse* response) override {
    return Done(context, Reply(context, service_.ReportMigration(*request), response));
  }
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const api::ListRequest* request,
                                      api::ListNodesResponse* response) override {
    return Done(context, Reply(context, service_.ListNodes(*request), response));
  }
  grpc::ServerUnaryReactor* ListVms(grpc::CallbackServerContext* context,
                                    const api::ListRequest* request,
                                    api::ListVmsResponse* response) override {
    return Done(context, Reply(context, service_.ListVms(*request), response));
  }
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const api::StatusRequest* request,
                                      api::StatusResponse* response) override {
    return Done(context, Reply(context, service_.GetStatus(*request), response));
  }
  grpc::ServerUnaryReactor* UpdateNode(grpc::CallbackServerContext* context,
                                       const api::UpdateNodeRequest* request,
                                       api::UpdateNodeResponse* response) override {
    return Done(context, Reply(context, service_.UpdateNode(*request), response));
  }
  grpc::ServerUnaryReactor* CordonNode(grpc::CallbackServerContext* context,
                                       const api::CordonNodeRequest* request,
                                       api::CordonNodeResponse* response) override {
    return Done(context, Reply(context, service_.CordonNode(*request), response));
  }
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* context,
                                      const api::DrainNodeRequest* request,
                                      api::DrainNodeResponse* response) override {
    return Done(context, Reply(context, service_.DrainNode(*request), response));
  }
  grpc::ServerUnaryReactor* RemoveNode(grpc::CallbackServerContext* context,
                                       const api::RemoveNodeRequest* request,
                                       api::RemoveNodeResponse* response) override {
    return Done(context, Reply(context, service_.RemoveNode(*request), response));
  }
  grpc::ServerUnaryReactor* UpdateVmBounds(grpc::CallbackServerContext* context,
                                           const api::UpdateVmBoundsRequest* request,
                                           api::UpdateVmBoundsResponse* response) override {
    return Done(context, Reply(context, service_.UpdateVmBounds(*request), response));
  }

 private:
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, grpc::Status status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(std::move(status));
    return reactor;
  }

  SchedulerService& service_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(SchedulerService& service,
                                                        const std::string& address) {
  return internal::StartGrpcServer("scheduler", address, std::make_unique<Service>(service));
}

}  // namespace autoscale::rpc::scheduler
