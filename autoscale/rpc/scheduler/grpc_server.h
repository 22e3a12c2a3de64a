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

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "autoscale/rpc/server.h"

namespace autoscale::rpc::scheduler {

// Listens on `address`: "host:port" (port 0 picks a free one) or "unix:/path" (a stale socket
// file there is replaced). `service` must outlive the server.
absl::StatusOr<std::unique_ptr<Server>> StartGrpcServer(SchedulerService& service,
                                                        const std::string& address);

}  // namespace autoscale::rpc::scheduler
