#include "autoscale/base/init.h"

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "glog/logging.h"

namespace autoscale {

std::vector<char*> InitProgram(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  google::InstallFailureSignalHandler();
  return args;
}

}  // namespace autoscale
