// glog's --v as an Abseil flag. glog declares its own FLAGS_v (a gflags variable in namespace
// fLI, brought into the global namespace by glog/logging.h), so this file must not include glog:
// here FLAGS_v is Abseil's, and init.cc reads it through VerbosityFlag().
#include <optional>

#include "absl/flags/flag.h"

ABSL_FLAG(int, v, -1,
          "Verbose logging: VLOG(n) messages with n <= this are written (-1: GLOG_v from the "
          "environment, else 0).");

namespace autoscale::internal {

std::optional<int> VerbosityFlag() {
  const int v = absl::GetFlag(FLAGS_v);
  if (v < 0) return std::nullopt;
  return v;
}

}  // namespace autoscale::internal
