// For init_test.sh: starts like every binary, then logs at each severity and at VLOG(2); with
// the argument "crash", fails a CHECK first.
#include <string>
#include <vector>

#include "autoscale/base/init.h"
#include "glog/logging.h"

int main(int argc, char** argv) {
  const std::vector<char*> args = autoscale::InitProgram(
      argc, argv, "init_test_helper [--v=N] [--log_format=text|json] [crash]");
  CHECK(args.size() < 2 || std::string(args[1]) != "crash") << "asked to \"crash\"";
  LOG(INFO) << "plain info";
  LOG(WARNING) << "a \"quoted\" word,\ta tab and a back\\slash";
  LOG(ERROR) << "an error from caf\xc3\xa9 with a stray \xff byte";
  VLOG(2) << "verbose two";
  return 0;
}
