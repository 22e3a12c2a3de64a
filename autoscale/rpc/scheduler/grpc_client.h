// A SchedulerClient over gRPC (see scheduler_client.h). Errors keep the scheduler's status code
// (NOT_FOUND, INVALID_ARGUMENT, ...) and say which scheduler and call failed; an unreachable
// scheduler is UNAVAILABLE, a slow one DEADLINE_EXCEEDED.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SchedulerClient> client,
//                    NewGrpcSchedulerClient("sched.example:10299", absl::Seconds(2)));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/scheduler_client.h"

namespace autoscale::rpc {

// `address`: "host:port" or "unix:/path". Each call waits at most `timeout`.
absl::StatusOr<std::unique_ptr<SchedulerClient>> NewGrpcSchedulerClient(
    const std::string& address, absl::Duration timeout = absl::Seconds(2));

}  // namespace autoscale::rpc
