// autoscale-goal: computes a VM's goal size from one JSON document on stdin and prints the goal,
// the desired resources and the breakdown as JSON. Bad input: a message on stderr and exit 2.
//
//   echo '{"computeUnit": {"milliCpu": 250, "memoryBytes": 1073741824},
//          "bounds": {"minCu": 1, "maxCu": 16},
//          "metrics": {"loadAvg1m": 1.0, "memoryUsageBytes": 2147483648},
//          "using": {"milliCpu": 250, "memoryBytes": 1073741824}}' | autoscale-goal
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "autoscale/base/init.h"
#include "examples/goal/goal_cli.h"

namespace {

constexpr char kUsage[] =
    "autoscale-goal < input.json: reads {config, computeUnit, bounds, metrics, using} as JSON on "
    "stdin and prints {goalCu, desired, decidedBy, breakdown}";

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = autoscale::InitProgram(argc, argv, kUsage);
  if (args.size() > 1) {
    std::cerr << "usage: " << kUsage << "\n";
    return 2;
  }
  std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  absl::StatusOr<std::string> out = autoscale::examples::RunGoal(input);
  if (!out.ok()) {
    std::cerr << "autoscale-goal: " << out.status().message() << "\n";
    return 2;
  }
  std::cout << *out << "\n";
  return 0;
}
