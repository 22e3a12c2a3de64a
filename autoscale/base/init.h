// Start-up for the example binaries: absl flags, glog to stderr, a usage line.
//
//   int main(int argc, char** argv) {
//     std::vector<char*> args = autoscale::InitProgram(argc, argv, "Usage: agent --config=FILE");
//     ...
//   }
#pragma once

#include <vector>

namespace autoscale {

// Parses flags (exits with a message on a bad flag), sets up logging to stderr, turns off
// Abseil's debug-build mutex deadlock detector, and returns the positional arguments, argv[0]
// first.
std::vector<char*> InitProgram(int argc, char** argv, const char* usage);

}  // namespace autoscale
