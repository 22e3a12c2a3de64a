// The agent's configuration (an api::v1::AgentConfig): checked whether it comes from code or from a
// file, with errors that name the field. A file is one source of configs among others: the
// agent takes a config from code at Start and UpdateConfig (agent.h), and ConfigFileWatcher
// (there) feeds it a file's configs as the file changes.
//
//   ASSIGN_OR_RETURN(api::v1::AgentConfig config, LoadAgentConfig("/etc/autoscale/agent.json"));
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
// bounds within what its launch spec can take, a valid launch spec whose memory slots divide the
// compute unit); the incoming VMs the same, without a QMP address. Errors name the field and the
// VM ("vms[1].bounds.maxCu: VM db1 may grow to ...").
absl::Status ValidateAgentConfig(const api::v1::AgentConfig& config);

// Reads and checks an AgentConfig file (.json or .textproto); errors name the file and the field.
absl::StatusOr<api::v1::AgentConfig> LoadAgentConfig(const std::string& path);

// The migration options of `settings`: zero fields take MigrationOptions' defaults; errors name
// the field.
absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFromProto(
    const api::v1::MigrationSettings& settings);

// How `vm` is migrated: `settings`, and whether postcopy may follow precopy. Under KVM that is the
// VM's allowPostcopy (unset: no). Under TCG (`kvm` false) postcopy always follows the first pass:
// TCG's precopy loses writes of a guest that keeps writing memory (QEMU 10.0.2,
// neonvm/migration/migration.h), silently, whereas postcopy's own risk (a target that dies after
// the switch loses the VM) is seen and reported. A VM whose allowPostcopy is false under TCG is
// not migrated (FAILED_PRECONDITION): precopy is the only way left, and it is not safe.
absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFor(
    const api::v1::MigrationSettings& settings, const api::v1::VmConfig& vm, bool kvm);

}  // namespace autoscale::agent
