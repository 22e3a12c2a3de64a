// For init_test.sh: starts like every binary, then logs at each severity and at VLOG(2).
#include "autoscale/base/init.h"
#include "glog/logging.h"

int main(int argc, char** argv) {
  autoscale::InitProgram(argc, argv, "init_test_helper [--v=N] [--log_format=text|json]");
  LOG(INFO) << "plain info";
  LOG(WARNING) << "a \"quoted\" word,\ta tab and a back\\slash";
  LOG(ERROR) << "an error from caf\xc3\xa9 with a stray \xff byte";
  VLOG(2) << "verbose two";
  return 0;
}
