// The README's worked example through the installed scaling core: a VM with a load average of 1.0
// and 2 GiB in use, with compute units of 1/4 vCPU and 1 GiB, should have 4 compute units,
// decided by its CPU (1.0 / 0.9 / 0.25 = 4.44, rounded). Prints the goal; exits 1 if it is not
// that. Uses autoscale-core alone (scripts/cmake_check also builds it with `pkg-config
// autoscale-core`).

#include "autoscale/core/goal.h"

#include <cstdio>

int main() {
  using namespace autoscale::core;
  const Resources compute_unit{.milli_cpu = 250, .memory_bytes = int64_t{1} << 30};
  const SystemMetrics metrics{
      .load_avg_1m = 1.0, .load_avg_5m = 0.5, .memory_usage_bytes = double(int64_t{2} << 30)};
  const Goal goal = ComputeGoal(ScalingConfig{}, compute_unit, &metrics, /*lfc=*/nullptr);
  std::printf("goal_cu=%u decided_by=%s\n", goal.goal_cu, SignalName(goal.decided_by));
  return goal.goal_cu == 4 && goal.decided_by == Signal::kCpu ? 0 : 1;
}
