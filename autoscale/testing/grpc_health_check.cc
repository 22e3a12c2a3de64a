// grpc_health_check ADDRESS [SERVICE]: calls grpc.health.v1.Health/Check on a plaintext server
// and prints the answer. Exit 0 when it is SERVING, 1 otherwise (2 on bad usage).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "autoscale/testing/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: grpc_health_check ADDRESS [SERVICE]\n");
    return 2;
  }
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  if (argc == 3) request.set_service(argv[2]);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::printf("%s: error %d: %s\n", argv[1], status.error_code(), status.error_message().c_str());
    return 1;
  }
  std::printf("%s: %s\n", argv[1],
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}
