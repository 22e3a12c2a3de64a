#include "autoscale/base/init.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/version.h"
#include "glog/logging.h"

ABSL_FLAG(int, vlog, 0, "Verbose logging: VLOG(n) messages with n <= this are written.");

namespace autoscale {
namespace {

// Whether a flag defined in `file` is this project's. Bazel compiles our sources with paths
// relative to the workspace ("examples/agent/main.cc"); the system libraries' flags carry other
// paths (Debian's Abseil: "./absl/flags/parse.cc").
bool IsProjectFile(absl::string_view file) {
  return !file.empty() && file[0] != '.' && file[0] != '/' && !absl::StartsWith(file, "external/");
}

std::string ProgramName(const char* argv0) {
  absl::string_view name = argv0;
  const size_t slash = name.rfind('/');
  return std::string(slash == absl::string_view::npos ? name : name.substr(slash + 1));
}

}  // namespace

std::vector<char*> InitProgram(int argc, char** argv, const char* usage) {
  // Debian's Abseil is built without NDEBUG, so absl::Mutex would run its deadlock detector (a
  // global graph behind a global lock) on every lock, in our code and in gRPC. Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // By default --help lists only the flags of a file named after the program (main.cc is not),
  // and --version prints the build mode.
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsProjectFile;
  config.contains_helpshort_flags = IsProjectFile;
  config.version_string = [program = ProgramName(argv[0])] {
    return absl::StrCat(program, " ", Version(), "\n");
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_v = absl::GetFlag(FLAGS_vlog);
  google::InitGoogleLogging(argv[0]);
  google::InstallFailureSignalHandler();
  return args;
}

}  // namespace autoscale
