// Fuzzes the whole input path of autoscale-goal: JSON parsing, validation and the computation.
// Any input must give a result or an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "examples/goal/goal_cli.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)autoscale::examples::RunGoal(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
