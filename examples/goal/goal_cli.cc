#include "examples/goal/goal_cli.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/core/state.h"
#include "examples/goal/goal_input.pb.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace autoscale::examples {
namespace {

using core::Resources;

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void Optional(Writer& w, const char* key, const std::optional<double>& v) {
  w.Key(key);
  if (v) {
    w.Double(*v);
  } else {
    w.Null();
  }
}

}  // namespace

absl::StatusOr<std::string> RunGoal(std::string_view json_input) {
  GoalInput in;
  RETURN_IF_ERROR(ParseJsonProto(json_input, in, "input"));
  if (!in.has_compute_unit()) return absl::InvalidArgumentError("computeUnit: required");
  if (!in.has_bounds()) return absl::InvalidArgumentError("bounds: required");
  ASSIGN_OR_RETURN(Resources cu, core::ComputeUnitFromProto(in.compute_unit()));
  ASSIGN_OR_RETURN(core::Bounds bounds, core::BoundsFromProto(in.bounds()));
  ASSIGN_OR_RETURN(core::ScalingConfig scaling, core::ResolveScalingConfig(in.config()));
  ASSIGN_OR_RETURN(Resources current, core::ResourcesFromProto(in.using_(), "using"));

  core::State state(core::StateConfig{cu, scaling, core::Timings{}}, current, bounds);
  const absl::Time now = absl::UnixEpoch();
  if (in.has_metrics()) {
    ASSIGN_OR_RETURN(core::SystemMetrics system, core::SystemMetricsFromProto(in.metrics()));
    state.UpdateSystemMetrics(now, system);
    if (in.metrics().lfc_working_set_pages_size() > 0) {
      ASSIGN_OR_RETURN(core::LfcMetrics lfc, core::LfcMetricsFromProto(in.metrics()));
      state.UpdateLfcMetrics(now, lfc);
    }
  }
  const core::Desired d = state.DesiredResources(now);
  const core::Goal& g = d.goal;

  rapidjson::StringBuffer out;
  Writer w(out);
  w.StartObject();
  w.Key("goalCu");
  w.Uint(g.goal_cu);
  w.Key("desired");
  w.StartObject();
  w.Key("milliCpu");
  w.Int64(d.resources.milli_cpu);
  w.Key("memoryBytes");
  w.Int64(d.resources.memory_bytes);
  w.EndObject();
  w.Key("decidedBy");
  w.String(core::SignalName(d.decided_by));
  w.Key("breakdown");
  w.StartObject();
  Optional(w, "cpuCu", g.cpu_cu);
  Optional(w, "memoryCu", g.memory_cu);
  Optional(w, "memoryTotalCu", g.memory_total_cu);
  Optional(w, "lfcCu", g.lfc_cu);
  Optional(w, "loadAverage", g.load_average);
  Optional(w, "lfcEstimatePages", g.lfc_estimate_pages);
  Optional(w, "lfcProjectedPages", g.lfc_projected_pages);
  w.Key("goalDecidedBy");
  w.String(core::SignalName(g.decided_by));
  w.Key("hasAllMetrics");
  w.Bool(g.has_all_metrics);
  w.EndObject();
  w.EndObject();
  return std::string(out.GetString(), out.GetSize());
}

}  // namespace autoscale::examples
