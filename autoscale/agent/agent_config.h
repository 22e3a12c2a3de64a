// The agent's configuration (an api::AgentConfig): checked whether it comes from code or from a
// file, with errors that name the field. A file is one source of configs among others: the
// agent takes a config from code at Start and UpdateConfig (agent.h), and ConfigFileWatcher
// (there) feeds it a file's configs as the file changes.
//
//   ASSIGN_OR_RETURN(api::AgentConfig config, LoadAgentConfig("/etc/autoscale/agent.json"));
//   RETURN_IF_ERROR(ValidateAgentConfig(config_built_in_code));
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/api/config.pb.h"
#include "neonvm/migration/source.h"

namespace autoscale::agent {

// Checks a whole AgentConfig: the node, the scheduler's address, the compute unit, the scaling
// configs and timings, the migration settings, and every VM (a unique name, a QMP address,
// bounds, a valid launch spec whose memory slots divide the compute unit). Errors name the field
// ("vms[1].bounds: ...").
absl::Status ValidateAgentConfig(const api::AgentConfig& config);

// Reads and checks an AgentConfig file (.json or .textproto); errors name the file and the field.
absl::StatusOr<api::AgentConfig> LoadAgentConfig(const std::string& path);

// The migration options of `settings`: zero fields take MigrationOptions' defaults; errors name
// the field.
absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFromProto(
    const api::MigrationSettings& settings);

}  // namespace autoscale::agent
