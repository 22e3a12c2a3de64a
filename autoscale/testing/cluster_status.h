// Reading the cluster: whether it can run here, and what an agent's /status JSON says (for the demo
// and the end-to-end tests).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/testing/cluster.h"
#include "rapidjson/document.h"

namespace autoscale::testing {

// Empty if the cluster can run here; otherwise what is missing.
std::string ClusterMissing();

// The VM's entry in an agent status document, or null.
const rapidjson::Value* VmStatus(const rapidjson::Document& status, const std::string& vm);

// Polls the node's agent status until `done(status)` or `timeout`; returns the last status.
absl::StatusOr<rapidjson::Document> AwaitStatus(
    Cluster& cluster, const std::string& node, absl::Duration timeout,
    const std::function<bool(const rapidjson::Document&)>& done);

// The memory (bytes) or milli-CPU of "current"/"permit"/"desired" of the VM; -1 if absent.
int64_t Field(const rapidjson::Value* vm, const char* what, const char* unit);

// Whether the node's event log has an event of `kind` for `vm` whose text contains `text`,
// after the event numbered `since`.
bool HasEvent(const rapidjson::Document& status, const std::string& vm, const std::string& kind,
              const std::string& text = "", uint64_t since = 0);

// The milliseconds memstep reported ("memstep: online after 142.7 ms ..."), if any.
std::optional<double> ReactionMs(const std::string& memstep_line);

}  // namespace autoscale::testing
