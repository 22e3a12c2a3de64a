// The systemd readiness protocol (sd_notify(3)) without libsystemd: a datagram such as "READY=1"
// to the unix socket named by $NOTIFY_SOCKET ("@name" for an abstract socket). Daemons started by
// a unit with Type=notify call NotifyReady() once they serve and NotifyStopping() on shutdown.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace autoscale {

// Sends `state` ("READY=1", "STOPPING=1", "STATUS=...") to $NOTIFY_SOCKET. Without the variable
// (not started by systemd) it does nothing and returns OK.
absl::Status SdNotify(std::string_view state);

inline absl::Status NotifyReady() { return SdNotify("READY=1"); }
inline absl::Status NotifyStopping() { return SdNotify("STOPPING=1"); }

}  // namespace autoscale
