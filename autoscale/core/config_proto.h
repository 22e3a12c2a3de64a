// The scaling core's configuration and resources read from the protos of autoscale/api
// (config.proto, resources.proto), validated with errors that name the field, and resources
// written back. Apart from config.h, so that users of the pure core need no generated protobuf
// code.
//
//   // Agent-wide defaults from the agent's config file, then one VM's overrides on top:
//   absl::StatusOr<ScalingConfig> config =
//       ResolveScalingConfig(agent_config.scaling(), vm_config.scaling());
//   if (!config.ok()) ...  // "scaling config: lfcWindowSizeMinutes must be >= 2, got 1"
#pragma once

#include "absl/status/statusor.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/api/resources.pb.h"
#include "autoscale/core/config.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/resources.h"

namespace autoscale::core {

// Reference defaults, then the fields set in `defaults`, then the fields set in `overrides`;
// validated.
absl::StatusOr<ScalingConfig> ResolveScalingConfig(const api::v1::ScalingConfig& defaults,
                                                   const api::v1::ScalingConfig& overrides = {});

// Reference defaults overridden by the durations set in `timings`; each must be > 0.
absl::StatusOr<Timings> ResolveTimings(const api::v1::AgentTimings& timings);

// A compute unit must have both fields > 0; `field` names it in the error.
absl::StatusOr<Resources> ComputeUnitFromProto(const api::v1::ComputeUnit& cu,
                                               const char* field = "computeUnit");
// Bounds must satisfy 1 <= minCu <= maxCu.
absl::StatusOr<Bounds> BoundsFromProto(const api::v1::Bounds& bounds, const char* field = "bounds");
// Resources must not be negative.
absl::StatusOr<Resources> ResourcesFromProto(const api::v1::Resources& r, const char* field);

api::v1::Resources ToProto(const Resources& r);

// A VM's metrics as the goal computation takes them, refused at the edge when a value is not a
// finite number >= 0 (a NaN from a guest would make every goal NaN), or when there are more than
// 60 LFC windows. Errors name the field ("metrics: loadAvg1m must be ...").
absl::StatusOr<SystemMetrics> SystemMetricsFromProto(const api::v1::Metrics& m);
// The LFC windows of `m` (possibly none).
absl::StatusOr<LfcMetrics> LfcMetricsFromProto(const api::v1::Metrics& m);

}  // namespace autoscale::core
