// Faults with commands in flight against real QEMU: QEMU stopped (SIGSTOP) gives a timeout and
// the late reply is dropped; QEMU killed gives every pending command an error at once, well
// within its timeout.
#include <signal.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::qmp {
namespace {

using launcher::Vm;

std::unique_ptr<Vm> StartVm(const std::string& name) {
  auto vm = Vm::Start(testing::NoGuestSpec(name));
  EXPECT_TRUE(vm.ok()) << vm.status();
  return vm.ok() ? std::move(*vm) : nullptr;
}

TEST(QmpFault, StoppedQemuTimesOutThenRecovers) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> vm = StartVm("fault-stop");
  ASSERT_NE(vm, nullptr);
  ASSERT_EQ(kill(vm->pid(), SIGSTOP), 0);
  auto r = vm->qmp().Execute("query-status", {}, absl::Milliseconds(300));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  ASSERT_EQ(kill(vm->pid(), SIGCONT), 0);
  // QEMU now answers the old command too; that reply is dropped and the next one matches.
  auto next = vm->qmp().Execute("query-hotpluggable-cpus");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(absl::StrContains(*next, "vcpus-count")) << *next;
}

TEST(QmpFault, KilledQemuFailsPendingCommandsAtOnce) {
  AUTOSCALE_REQUIRE_QEMU();
  std::unique_ptr<Vm> vm = StartVm("fault-kill");
  ASSERT_NE(vm, nullptr);
  // Stopped, QEMU cannot answer: the commands stay pending until it dies.
  ASSERT_EQ(kill(vm->pid(), SIGSTOP), 0);
  constexpr int kPending = 3;
  std::vector<absl::Status> results(kPending);
  std::vector<std::thread> threads;
  EventQueue events(vm->qmp());
  for (int i = 0; i < kPending; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = vm->qmp().Execute("query-status", {}, absl::Seconds(60)).status(); });
  }
  absl::SleepFor(absl::Milliseconds(100));  // Let them be sent; not a timing assertion.
  vm->Kill();
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) {
    // Unavailable (the connection was lost), not the 60 s DeadlineExceeded.
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "qmp query-status on unix:")) << s;
  }
  EXPECT_EQ(events.Next(absl::Seconds(10)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(vm->qmp().Execute("query-status").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(vm->Running());
  EXPECT_EQ(vm->ExitDescription(), "killed by signal 9");
}

}  // namespace
}  // namespace autoscale::neonvm::qmp
