// The scheduler protocol over gRPC: serves any SchedulerService (scheduler.h).
//
// Served with gRPC's callback API: a Request waiting for its permit to become durable
// (SchedulerService::RequestAsync) holds no thread, so many concurrent requests share one fsync
// (group commit).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<rpc::Server> server,
//                    StartGrpcServer(handler, "127.0.0.1:0"));   // or "unix:/run/s.sock"
//   std::string address = server->address();   // what clients dial: "127.0.0.1:41234"
//   ...
//   server->Shutdown(absl::Seconds(2));
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "autoscale/rpc/server.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc::scheduler {

// The service as one caller may use it, made for each call: `identity` is the first URI SAN of
// the caller's verified certificate ("spiffe://td/node/a"), "" over plaintext. The transport
// only authenticates; the scheduler library authorizes (scheduler::Authz::For).
using ServiceFor = std::function<std::shared_ptr<SchedulerService>(const std::string& identity)>;

// Requests are limited to kMaxMessageBytes (an agent's are a few hundred bytes).
inline constexpr int kMaxMessageBytes = 16 << 10;

// Listens on `address`: "host:port" (port 0 picks a free one) or "unix:/path" (a stale socket
// file there is replaced), with `security` (tls.h).
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(ServiceFor service_for,
                                                        const std::string& address,
                                                        const Security& security);
// Every caller gets `service` (which must outlive the server) as it is: no authorization. Tests
// pass no `security`: plaintext.
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(
    SchedulerService& service, const std::string& address,
    const Security& security = Security::Plaintext());

}  // namespace autoscale::rpc::scheduler
