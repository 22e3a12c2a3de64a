#pragma once

#include "absl/status/statusor.h"

namespace autoscale::testing {

// A TCP port on 127.0.0.1 that nobody listens on now (the kernel's choice for port 0), for a
// third-party server that cannot report the port it bound (PostgreSQL, etcd). Another process may
// take it first, and the server then fails with "address in use" (EtcdCluster tries again).
absl::StatusOr<int> FreePort();

}  // namespace autoscale::testing
