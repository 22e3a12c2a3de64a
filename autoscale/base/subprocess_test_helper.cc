// For subprocess_test: starts two children from a thread that then ends (one with Spawn, one
// with ForkChild), prints "<own pid> <spawned pid> <forked pid>", and waits to be killed. The
// test checks that the children outlive the thread and die with this process.
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "autoscale/base/subprocess.h"

int main() {
  pid_t spawned = -1, forked = -1;
  std::thread([&] {
    absl::StatusOr<pid_t> s = autoscale::Spawn({"sleep", "1000"});
    absl::StatusOr<pid_t> f = autoscale::ForkChild([] {
      while (true) pause();
      return 0;
    });
    if (s.ok()) spawned = *s;
    if (f.ok()) forked = *f;
  }).join();
  if (spawned < 0 || forked < 0) return 1;
  std::printf("%d %d %d\n", getpid(), spawned, forked);
  std::fflush(stdout);
  while (true) pause();
}
