// SchedulerServer: the scheduler protocol over gRPC, serving a SchedulerHandler.
//
// Served with gRPC's callback API: a request waiting for its permit to become durable holds no
// thread, so many concurrent requests share one fsync (group commit).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SchedulerServer> server,
//                    SchedulerServer::Start(handler, "127.0.0.1:0"));   // or "unix:/run/s.sock"
//   std::string address = server->address();   // what clients dial: "127.0.0.1:41234"
//   ...
//   server->Shutdown(absl::Seconds(2));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/scheduler_handler.h"

namespace autoscale::rpc {

class SchedulerServer {
 public:
  // Listens on `address`: "host:port" (port 0 picks a free one) or "unix:/path" (a stale socket
  // file there is replaced).
  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Start(SchedulerHandler& handler,
                                                                const std::string& address);
  // Shuts down at once if Shutdown was not called.
  ~SchedulerServer();

  // What clients dial: "host:port" with the port chosen, or "unix:/path".
  const std::string& address() const;
  // The TCP port listened on (0 for a unix socket).
  int port() const;
  // Refuses new calls, lets calls in flight finish for up to `grace`, then cancels the rest.
  void Shutdown(absl::Duration grace);

 private:
  struct Impl;
  explicit SchedulerServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace autoscale::rpc
