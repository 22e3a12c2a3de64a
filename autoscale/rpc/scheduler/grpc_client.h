// A SchedulerService that is a scheduler daemon over gRPC (see scheduler.h), for agents,
// schedctl and orchestrators. Errors keep the scheduler's status code (NOT_FOUND,
// INVALID_ARGUMENT, ...) and say which scheduler and call failed; an unreachable scheduler is
// UNAVAILABLE, a slow one DEADLINE_EXCEEDED. The client does not retry: the agent's state machine
// retries on its own schedule.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SchedulerService> scheduler,
//                    NewGrpcClient("sched.example:10299", absl::Seconds(2)));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::rpc::scheduler {

// `address`: "host:port" or "unix:/path". Each call waits at most `timeout`.
absl::StatusOr<std::unique_ptr<SchedulerService>> NewGrpcClient(
    const std::string& address, absl::Duration timeout = absl::Seconds(2));

}  // namespace autoscale::rpc::scheduler
