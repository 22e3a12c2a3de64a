#include "autoscale/rpc/scheduler/grpc_client.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/rpc/grpc_status.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::scheduler {
namespace {

class GrpcClient final : public SchedulerService {
 public:
  // The agent's state machine retries on its own schedule, so gRPC should not: a failed call
  // fails at once. Reconnect quickly once a restarted scheduler is back.
  static grpc::ChannelArguments ChannelArgs() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    return args;
  }

  GrpcClient(std::string address, absl::Duration timeout)
      : address_(std::move(address)),
        timeout_(timeout),
        stub_(api::Scheduler::NewStub(grpc::CreateCustomChannel(
            address_, grpc::InsecureChannelCredentials(), ChannelArgs()))) {}

  absl::StatusOr<api::PermitResponse> Request(const api::PermitRequest& request) override {
    return Call("Request", &api::Scheduler::Stub::Request, request);
  }
  absl::StatusOr<api::RegisterNodeResponse> RegisterNode(
      const api::RegisterNodeRequest& request) override {
    return Call("RegisterNode", &api::Scheduler::Stub::RegisterNode, request);
  }
  absl::StatusOr<api::MigrationOrdersResponse> GetMigrationOrders(
      const api::MigrationOrdersRequest& request) override {
    return Call("GetMigrationOrders", &api::Scheduler::Stub::GetMigrationOrders, request);
  }
  absl::StatusOr<api::MigrationResultResponse> ReportMigration(
      const api::MigrationResult& request) override {
    return Call("ReportMigration", &api::Scheduler::Stub::ReportMigration, request);
  }
  absl::StatusOr<api::PlaceVmResponse> PlaceVm(const api::PlaceVmRequest& request) override {
    return Call("PlaceVm", &api::Scheduler::Stub::PlaceVm, request);
  }
  absl::StatusOr<api::ReleaseVmResponse> ReleaseVm(const api::ReleaseVmRequest& request) override {
    return Call("ReleaseVm", &api::Scheduler::Stub::ReleaseVm, request);
  }
  absl::StatusOr<api::ListNodesResponse> ListNodes(const api::ListRequest& request) override {
    return Call("ListNodes", &api::Scheduler::Stub::ListNodes, request);
  }
  absl::StatusOr<api::ListVmsResponse> ListVms(const api::ListRequest& request) override {
    return Call("ListVms", &api::Scheduler::Stub::ListVms, request);
  }
  absl::StatusOr<api::StatusResponse> GetStatus(const api::StatusRequest& request) override {
    return Call("GetStatus", &api::Scheduler::Stub::GetStatus, request);
  }
  absl::StatusOr<api::UpdateNodeResponse> UpdateNode(
      const api::UpdateNodeRequest& request) override {
    return Call("UpdateNode", &api::Scheduler::Stub::UpdateNode, request);
  }
  absl::StatusOr<api::CordonNodeResponse> CordonNode(
      const api::CordonNodeRequest& request) override {
    return Call("CordonNode", &api::Scheduler::Stub::CordonNode, request);
  }
  absl::StatusOr<api::DrainNodeResponse> DrainNode(const api::DrainNodeRequest& request) override {
    return Call("DrainNode", &api::Scheduler::Stub::DrainNode, request);
  }
  absl::StatusOr<api::RemoveNodeResponse> RemoveNode(
      const api::RemoveNodeRequest& request) override {
    return Call("RemoveNode", &api::Scheduler::Stub::RemoveNode, request);
  }
  absl::StatusOr<api::UpdateVmBoundsResponse> UpdateVmBounds(
      const api::UpdateVmBoundsRequest& request) override {
    return Call("UpdateVmBounds", &api::Scheduler::Stub::UpdateVmBounds, request);
  }

 private:
  template <typename Req, typename Resp>
  absl::StatusOr<Resp> Call(const char* method,
                            grpc::Status (api::Scheduler::Stub::*rpc)(grpc::ClientContext*,
                                                                      const Req&, Resp*),
                            const Req& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
    Resp response;
    grpc::Status s = (stub_.get()->*rpc)(&context, WithVersion(request), &response);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("scheduler ", address_, " ", method));
    return response;
  }

  const std::string address_;
  const absl::Duration timeout_;
  std::unique_ptr<api::Scheduler::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerService>> NewGrpcClient(const std::string& address,
                                                                absl::Duration timeout) {
  if (address.empty()) return absl::InvalidArgumentError("scheduler client: empty address");
  return std::make_unique<GrpcClient>(address, timeout);
}

}  // namespace autoscale::rpc::scheduler
