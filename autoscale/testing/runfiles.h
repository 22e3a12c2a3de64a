// Where a test's data dependencies are (Bazel runfiles).
//
//   std::string helper = Runfile("neonvm/launcher/start_vm_helper");
#pragma once

#include <string>
#include <string_view>

namespace autoscale::testing {

// The absolute path of a data dependency given by its path in this workspace, e.g.
// "neonvm/guest/loadgen", for a test (TEST_SRCDIR), `bazel run` (RUNFILES_DIR) or a binary run
// directly (its .runfiles directory).
std::string Runfile(std::string_view path);

}  // namespace autoscale::testing
