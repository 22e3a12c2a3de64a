// Start-up for the example binaries: absl flags, --help and --version, glog to stderr.
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
// first. --help lists the program's own flags (those defined in this project, not Abseil's);
// --version prints "<program> <version>" (autoscale/base/version.h).
std::vector<char*> InitProgram(int argc, char** argv, const char* usage);

}  // namespace autoscale
