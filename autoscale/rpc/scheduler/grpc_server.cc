#include "autoscale/rpc/scheduler_server.h"

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/rpc/grpc_status.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc {
namespace {

template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

// Every method uses the callback API, so the server needs no thread pool of its own: agent
// requests finish when their permit is durable (from the log's writer thread); the rare
// structural calls (placement, registration, migrations) answer before returning.
class Service final : public api::Scheduler::CallbackService {
 public:
  explicit Service(SchedulerHandler& handler) : handler_(handler) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* context,
                                    const api::PermitRequest* request,
                                    api::PermitResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    handler_.Request(*request, [reactor, response](absl::StatusOr<api::PermitResponse> r) {
      reactor->Finish(Reply(std::move(r), response));
    });
    return reactor;
  }
  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* context,
                                         const api::RegisterNodeRequest* request,
                                         api::RegisterNodeResponse* response) override {
    return Done(context, Reply(handler_.RegisterNode(*request), response));
  }
  grpc::ServerUnaryReactor* PlaceVm(grpc::CallbackServerContext* context,
                                    const api::PlaceVmRequest* request,
                                    api::PlaceVmResponse* response) override {
    return Done(context, Reply(handler_.PlaceVm(*request), response));
  }
  grpc::ServerUnaryReactor* ReleaseVm(grpc::CallbackServerContext* context,
                                      const api::ReleaseVmRequest* request,
                                      api::ReleaseVmResponse* response) override {
    return Done(context, Reply(handler_.ReleaseVm(*request), response));
  }
  grpc::ServerUnaryReactor* GetMigrationOrders(grpc::CallbackServerContext* context,
                                               const api::MigrationOrdersRequest* request,
                                               api::MigrationOrdersResponse* response) override {
    return Done(context, Reply(handler_.GetMigrationOrders(*request), response));
  }
  grpc::ServerUnaryReactor* ReportMigration(grpc::CallbackServerContext* context,
                                            const api::MigrationResult* request,
                                            api::MigrationResultResponse* response) override {
    return Done(context, Reply(handler_.ReportMigration(*request), response));
  }
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const api::ListRequest* request,
                                      api::ListNodesResponse* response) override {
    return Done(context, Reply(handler_.ListNodes(*request), response));
  }
  grpc::ServerUnaryReactor* ListVms(grpc::CallbackServerContext* context,
                                    const api::ListRequest* request,
                                    api::ListVmsResponse* response) override {
    return Done(context, Reply(handler_.ListVms(*request), response));
  }
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const api::StatusRequest* request,
                                      api::StatusResponse* response) override {
    return Done(context, Reply(handler_.GetStatus(*request), response));
  }

 private:
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, grpc::Status status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(std::move(status));
    return reactor;
  }

  SchedulerHandler& handler_;
};

}  // namespace

struct SchedulerServer::Impl {
  explicit Impl(SchedulerHandler& handler) : service(handler) {}
  Service service;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  int port = 0;
  bool shut_down = false;
};

SchedulerServer::SchedulerServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SchedulerServer::~SchedulerServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Start(
    SchedulerHandler& handler, const std::string& address) {
  auto impl = std::make_unique<Impl>(handler);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&impl->service);
  impl->server = builder.BuildAndStart();
  const bool unix = absl::StartsWith(address, "unix:");
  if (impl->server == nullptr || (!unix && port == 0)) {
    return absl::UnavailableError(
        absl::StrCat("scheduler server: cannot listen on ", address, " (address in use?)"));
  }
  if (unix) {
    impl->address = address;
  } else {
    // Dial what was bound, with the chosen port; a wildcard host is reached on loopback.
    std::string host = address.substr(0, address.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
    impl->address = absl::StrCat(host, ":", port);
    impl->port = port;
  }
  LOG(INFO) << "scheduler listening on " << impl->address;
  return std::unique_ptr<SchedulerServer>(new SchedulerServer(std::move(impl)));
}

const std::string& SchedulerServer::address() const { return impl_->address; }

int SchedulerServer::port() const { return impl_->port; }

void SchedulerServer::Shutdown(absl::Duration grace) {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->server->Shutdown(std::chrono::system_clock::now() +
                          std::chrono::microseconds(absl::ToInt64Microseconds(grace)));
  impl_->server->Wait();
}

}  // namespace autoscale::rpc
