// Reading the cluster: whether it can run here, and what an agent's status says (for the demo
// and the end-to-end tests). Events are matched by kind (api::v1::EventKind), never by their text.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/agent_status.pb.h"
#include "autoscale/testing/cluster.h"

namespace autoscale::testing {

// Empty if the cluster can run here; otherwise what is missing.
std::string ClusterMissing();

// The VM's entry in an agent status, or null.
const api::v1::VmStatus* VmStatus(const api::v1::AgentStatus& status, const std::string& vm);

// Polls the node's agent status until `done(status)` or `timeout`; returns the last status.
absl::StatusOr<api::v1::AgentStatus> AwaitStatus(
    Cluster& cluster, const std::string& node, absl::Duration timeout,
    const std::function<bool(const api::v1::AgentStatus&)>& done);

// The VM's current memory in bytes; -1 when the status has no such VM.
int64_t CurrentMemory(const api::v1::AgentStatus& status, const std::string& vm);

// The node's events of `kind` for `vm` after the event numbered `since`.
std::vector<api::v1::AgentEvent> Events(const api::v1::AgentStatus& status, const std::string& vm,
                                        api::v1::EventKind kind, uint64_t since = 0);
// Whether there is one.
bool HasEvent(const api::v1::AgentStatus& status, const std::string& vm, api::v1::EventKind kind,
              uint64_t since = 0);
// The highest event number in `status` (0 if none).
uint64_t LastEvent(const api::v1::AgentStatus& status);

// The milliseconds memstep reported ("memstep: online after 142.7 ms ..."), if any.
std::optional<double> ReactionMs(const std::string& memstep_line);

}  // namespace autoscale::testing
