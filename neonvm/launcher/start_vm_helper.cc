// For vm_test: starts a VM without a guest (its sockets in the directory given as the first
// argument, which the test removes; QEMU running as the user given as the second, VmSpec::user)
// from a thread that then ends, prints "<own pid> <QEMU pid>", and waits to be killed. The test
// checks that QEMU dies with this process, not with the thread that started it.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "neonvm/launcher/vm.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  using autoscale::neonvm::launcher::Vm;
  using autoscale::neonvm::launcher::VmSpec;
  std::unique_ptr<Vm> vm;
  std::thread([&vm, argv] {
    VmSpec spec;
    spec.name = "orphan-check";
    spec.user = argv[2];
    autoscale::neonvm::launcher::StartOptions options;
    options.runtime_dir = argv[1];
    auto started = Vm::Start(spec, options);
    if (started.ok()) vm = std::move(*started);
  }).join();
  if (vm == nullptr) return 1;
  std::printf("%d %d\n", getpid(), vm->pid());
  std::fflush(stdout);
  while (true) pause();
}
