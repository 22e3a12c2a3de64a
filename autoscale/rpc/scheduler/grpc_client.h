// A SchedulerService that is a scheduler daemon over gRPC (see scheduler.h), for agents,
// schedctl and orchestrators. Errors keep the scheduler's status code (NOT_FOUND,
// INVALID_ARGUMENT, ...) and say which scheduler and call failed; an unreachable scheduler is
// UNAVAILABLE, a slow one DEADLINE_EXCEEDED.
//
// Several schedulers (an active/standby group, scheduler::HaScheduler): give every address,
// comma-separated. A call goes to the scheduler that answered last; when it is unreachable, or a
// standby that answers UNAVAILABLE naming the leader, the call goes on to the leader it named
// (an address not in the list is added) or to the next address, within the one timeout. A
// standby never acted on the call, so sending it on is safe; a call that timed out is not sent
// again (it may have been acted on), but the next call starts at the next address, and for one
// timeout the client does not follow standbys back to the silent one (a frozen leader is named
// until its lease expires). Beyond that the client does not retry: the agent's state machine
// retries on its own schedule.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SchedulerService> scheduler,
//                    NewGrpcClient("sched-a:10299,sched-b:10299", absl::Seconds(2)));
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/scheduler/scheduler.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc::scheduler {

// `addresses`: "host:port" or "unix:/path", several separated by commas. Each call waits at most
// `timeout` in all. `security`: see tls.h (tests pass none: plaintext). `server_identity`: with
// TLS, what every scheduler's certificate must name ("spiffe://prod/scheduler"; "": any that the
// CA signed; see ChannelCredentials).
absl::StatusOr<std::unique_ptr<SchedulerService>> NewGrpcClient(
    const std::string& addresses, absl::Duration timeout = absl::Seconds(2),
    const Security& security = Security::Plaintext(), const std::string& server_identity = "");

}  // namespace autoscale::rpc::scheduler
