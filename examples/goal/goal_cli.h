// The logic of the autoscale-goal command: one JSON document in, the goal and its breakdown out.
//
//   absl::StatusOr<std::string> out = RunGoal(R"({"computeUnit": {...}, "bounds": {...}, ...})");
//
// Errors (bad JSON, missing or out-of-range values) are INVALID_ARGUMENT with a message that names
// the field.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace autoscale::examples {

absl::StatusOr<std::string> RunGoal(std::string_view json_input);

}  // namespace autoscale::examples
