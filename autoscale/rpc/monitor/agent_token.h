// The VM's agent token: the secret that binds a monitor to its VM's agent (issue 14). The process
// that starts a VM's QEMU makes one (NewAgentToken) and hands it to the guest at boot through
// QEMU's fw_cfg (launcher::VmSpec::agent_token: a 0600 file in the VM's runtime directory, never
// the kernel command line, which every guest process can read in /proc/cmdline); the agent
// presents it in its Hello, and the monitor, which reads it from the fw_cfg sysfs file
// (kGuestAgentTokenPath), admits no agent without it. It moves with the VM in a migration
// (PrepareIncomingRequest.agent_token), over the authenticated agent-peer link.
//
//   std::string token = NewAgentToken();                      // the launcher
//   ASSIGN_OR_RETURN(std::string t, ReadAgentToken(path));    // the agent, the monitor
//   if (!TokensEqual(sent, t)) ...                            // constant time
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace autoscale::rpc::monitor {

// Where the guest finds the token: the fw_cfg entry's raw contents, in sysfs once the guest's
// qemu_fw_cfg module is loaded.
inline constexpr char kGuestAgentTokenPath[] =
    "/sys/firmware/qemu_fw_cfg/by_name/opt/autoscale/agent-token/raw";

// The longest token taken (from a file, or from a migration's source): a token, not a payload.
inline constexpr size_t kMaxAgentTokenBytes = 1024;

// A new token: 32 bytes of the kernel's CSPRNG, as 64 hexadecimal digits (a text file an operator
// can compare by eye).
std::string NewAgentToken();

// The token in `path`: its contents, which must be 16 to 1024 bytes (a short one is guessable, a
// huge one is not a token). Errors name the file; NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadAgentToken(const std::string& path);

// Whether `a` and `b` are the same token, in time that does not depend on where they differ (an
// attacker who may retry must not learn the token byte by byte from the replies' timing).
bool TokensEqual(std::string_view a, std::string_view b);

}  // namespace autoscale::rpc::monitor
