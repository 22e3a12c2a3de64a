#include "autoscale/rpc/internal/grpc_server.h"

#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autoscale/rpc/credentials.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace autoscale::rpc::internal {
namespace {

class GrpcServer final : public Server {
 public:
  GrpcServer(std::unique_ptr<grpc::Service> service, std::unique_ptr<grpc::Server> server,
             std::string address, int port)
      : service_(std::move(service)),
        server_(std::move(server)),
        address_(std::move(address)),
        port_(port) {}
  ~GrpcServer() override { Shutdown(absl::ZeroDuration()); }

  const std::string& address() const override { return address_; }
  int port() const override { return port_; }
  void Shutdown(absl::Duration grace) override {
    if (shut_down_) return;
    shut_down_ = true;
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::microseconds(absl::ToInt64Microseconds(grace)));
    server_->Wait();
  }

 private:
  // The service outlives the server that calls it.
  const std::unique_ptr<grpc::Service> service_;
  const std::unique_ptr<grpc::Server> server_;
  const std::string address_;
  const int port_;
  bool shut_down_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(std::string_view what,
                                                        const std::string& address,
                                                        std::unique_ptr<grpc::Service> service,
                                                        const Security& security, Limits limits) {
  const absl::string_view name(what.data(), what.size());
  // The standard health service (grpc.health.v1.Health) on every server: "" and each service
  // answer SERVING while the server runs.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, ServerCredentials(security), &port);
  builder.SetMaxReceiveMessageSize(limits.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_streams);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  const bool unix = absl::StartsWith(address, "unix:");
  if (server == nullptr || (!unix && port == 0)) {
    return absl::UnavailableError(
        absl::StrCat(name, " server: cannot listen on ", address, " (address in use?)"));
  }
  std::string dial = address;
  if (!unix) {
    // Dial what was bound, with the chosen port; a wildcard host is reached on loopback.
    std::string host = address.substr(0, address.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
    dial = absl::StrCat(host, ":", port);
  } else {
    port = 0;
  }
  LOG(INFO) << name << " listening on " << dial
            << (security.tls() ? " (mutual TLS)" : " (plaintext, unauthenticated)");
  return std::make_unique<GrpcServer>(std::move(service), std::move(server), std::move(dial), port);
}

}  // namespace autoscale::rpc::internal
