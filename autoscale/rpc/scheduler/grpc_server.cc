#include "autoscale/rpc/scheduler/grpc_server.h"

#include <string>
#include <utility>

#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/rpc/credentials.h"
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
class Service final : public api::v1::Scheduler::CallbackService {
 public:
  explicit Service(ServiceFor service_for) : service_for_(std::move(service_for)) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* context,
                                    const api::v1::PermitRequest* request,
                                    api::v1::PermitResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    std::shared_ptr<SchedulerService> service = For(context);
    // `service` lives until the answer: an authorizing wrapper may be made for this call only.
    service->RequestAsync(
        *request, [context, reactor, response, service](absl::StatusOr<api::v1::PermitResponse> r) {
          reactor->Finish(Reply(context, std::move(r), response));
        });
    return reactor;
  }
  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* context,
                                         const api::v1::RegisterNodeRequest* request,
                                         api::v1::RegisterNodeResponse* response) override {
    return Done(context, Reply(context, For(context)->RegisterNode(*request), response));
  }
  grpc::ServerUnaryReactor* PlaceVm(grpc::CallbackServerContext* context,
                                    const api::v1::PlaceVmRequest* request,
                                    api::v1::PlaceVmResponse* response) override {
    return Done(context, Reply(context, For(context)->PlaceVm(*request), response));
  }
  grpc::ServerUnaryReactor* ReleaseVm(grpc::CallbackServerContext* context,
                                      const api::v1::ReleaseVmRequest* request,
                                      api::v1::ReleaseVmResponse* response) override {
    return Done(context, Reply(context, For(context)->ReleaseVm(*request), response));
  }
  grpc::ServerUnaryReactor* GetMigrationOrders(
      grpc::CallbackServerContext* context, const api::v1::MigrationOrdersRequest* request,
      api::v1::MigrationOrdersResponse* response) override {
    return Done(context, Reply(context, For(context)->GetMigrationOrders(*request), response));
  }
  grpc::ServerUnaryReactor* ReportMigration(grpc::CallbackServerContext* context,
                                            const api::v1::MigrationResult* request,
                                            api::v1::MigrationResultResponse* response) override {
    return Done(context, Reply(context, For(context)->ReportMigration(*request), response));
  }
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const api::v1::ListRequest* request,
                                      api::v1::ListNodesResponse* response) override {
    return Done(context, Reply(context, For(context)->ListNodes(*request), response));
  }
  grpc::ServerUnaryReactor* ListVms(grpc::CallbackServerContext* context,
                                    const api::v1::ListRequest* request,
                                    api::v1::ListVmsResponse* response) override {
    return Done(context, Reply(context, For(context)->ListVms(*request), response));
  }
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const api::v1::StatusRequest* request,
                                      api::v1::StatusResponse* response) override {
    return Done(context, Reply(context, For(context)->GetStatus(*request), response));
  }
  grpc::ServerUnaryReactor* UpdateNode(grpc::CallbackServerContext* context,
                                       const api::v1::UpdateNodeRequest* request,
                                       api::v1::UpdateNodeResponse* response) override {
    return Done(context, Reply(context, For(context)->UpdateNode(*request), response));
  }
  grpc::ServerUnaryReactor* CordonNode(grpc::CallbackServerContext* context,
                                       const api::v1::CordonNodeRequest* request,
                                       api::v1::CordonNodeResponse* response) override {
    return Done(context, Reply(context, For(context)->CordonNode(*request), response));
  }
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* context,
                                      const api::v1::DrainNodeRequest* request,
                                      api::v1::DrainNodeResponse* response) override {
    return Done(context, Reply(context, For(context)->DrainNode(*request), response));
  }
  grpc::ServerUnaryReactor* RemoveNode(grpc::CallbackServerContext* context,
                                       const api::v1::RemoveNodeRequest* request,
                                       api::v1::RemoveNodeResponse* response) override {
    return Done(context, Reply(context, For(context)->RemoveNode(*request), response));
  }
  grpc::ServerUnaryReactor* UpdateVmBounds(grpc::CallbackServerContext* context,
                                           const api::v1::UpdateVmBoundsRequest* request,
                                           api::v1::UpdateVmBoundsResponse* response) override {
    return Done(context, Reply(context, For(context)->UpdateVmBounds(*request), response));
  }

 private:
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, grpc::Status status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(std::move(status));
    return reactor;
  }

  std::shared_ptr<SchedulerService> For(grpc::CallbackServerContext* context) {
    return service_for_(rpc::PeerIdentity(*context));
  }

  const ServiceFor service_for_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(ServiceFor service_for,
                                                        const std::string& address,
                                                        const Security& security) {
  return internal::StartGrpcServer("scheduler", address,
                                   std::make_unique<Service>(std::move(service_for)), security,
                                   {.max_message_bytes = kMaxMessageBytes, .max_streams = 256});
}

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(SchedulerService& service,
                                                        const std::string& address,
                                                        const Security& security) {
  // Shares nothing: `service` outlives the server.
  return StartGrpcServer(
      [&service](const std::string&) {
        return std::shared_ptr<SchedulerService>(std::shared_ptr<void>(), &service);
      },
      address, security);
}

}  // namespace autoscale::rpc::scheduler
