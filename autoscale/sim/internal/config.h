// What Simulation::Create checks beyond ValidateSimConfig: the config against the VMs it is given.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "autoscale/sim/simulation.h"

namespace autoscale::sim {

// Some VMs, not too many, and series_vms naming distinct VMs among them (the error names the
// field).
absl::Status ValidateForVms(const SimConfig& config, size_t vm_count);

}  // namespace autoscale::sim
