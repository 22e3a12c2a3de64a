#include "autoscale/base/init.h"

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"

ABSL_FLAG(int, vlog, 0, "Verbose logging: VLOG(n) messages with n <= this are written.");

namespace autoscale {

std::vector<char*> InitProgram(int argc, char** argv, const char* usage) {
  // Debian's Abseil is built without NDEBUG, so absl::Mutex would run its deadlock detector (a
  // global graph behind a global lock) on every lock, in our code and in gRPC. Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  FLAGS_v = absl::GetFlag(FLAGS_vlog);
  google::InitGoogleLogging(argv[0]);
  google::InstallFailureSignalHandler();
  return args;
}

}  // namespace autoscale
