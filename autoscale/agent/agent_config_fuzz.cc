// Fuzzes an agent config from its JSON text to what a runner computes with it: parsing,
// ValidateAgentConfig, and, for a config that passes, each VM's scaling config, bounds and
// migration options, and the core's desired size at the extremes of its metrics (a compute unit
// times the largest goal). Any input must give a result or an error, never a crash or overflow
// (run it under --config=asan, which includes UBSan's checks where configured).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "autoscale/agent/agent_config.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/state.h"

namespace {

using autoscale::core::Resources;

void Exercise(const autoscale::api::v1::AgentConfig& c) {
  if (!autoscale::agent::ValidateAgentConfig(c).ok()) return;
  absl::StatusOr<Resources> cu = autoscale::core::ComputeUnitFromProto(c.compute_unit());
  absl::StatusOr<autoscale::core::Timings> timings = autoscale::core::ResolveTimings(c.timings());
  if (!cu.ok() || !timings.ok()) __builtin_trap();  // validated above
  for (const autoscale::api::v1::VmConfig& vm : c.vms()) {
    auto scaling = autoscale::core::ResolveScalingConfig(c.scaling(), vm.scaling());
    auto bounds = autoscale::core::BoundsFromProto(vm.bounds());
    if (!scaling.ok() || !bounds.ok()) __builtin_trap();
    (void)autoscale::agent::MigrationOptionsFor(c.migration(), vm, /*kvm=*/false);
    autoscale::core::State state({*cu, *scaling, *timings}, *cu * bounds->min_cu, *bounds);
    const absl::Time now = absl::UnixEpoch();
    // The largest metrics a guest can send: the goal saturates, the bounds clamp it.
    autoscale::core::SystemMetrics system{.load_avg_1m = 1e300,
                                          .load_avg_5m = 1e300,
                                          .memory_usage_bytes = 1e300,
                                          .memory_cached_bytes = 1e300};
    state.UpdateSystemMetrics(now, system);
    autoscale::core::LfcMetrics lfc;
    lfc.working_set_pages = std::vector<double>(60, 1e300);
    state.UpdateLfcMetrics(now, lfc);
    const Resources desired = state.DesiredResources(now).resources;
    if (desired.AnyGreaterThan(*cu * bounds->max_cu) || desired.AnyLessThan(*cu * bounds->min_cu)) {
      __builtin_trap();  // outside the bounds: an overflow wrapped
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  autoscale::api::v1::AgentConfig c;
  if (!autoscale::ParseJsonProto(std::string_view(reinterpret_cast<const char*>(data), size), c,
                                 "config")
           .ok()) {
    return 0;
  }
  Exercise(c);
  return 0;
}
