// Crash test with real processes: the scheduler daemon, under load from several clients that
// act as agents over a unix socket (testing::PermitAgents), is killed with SIGKILL and restarted
// again and again. After every restart (clients paused) the test checks, against what the clients
// saw:
//   - no node's reservation exceeds its total;
//   - every VM's ledger amount covers what the VM may be using (its acknowledged permit, or the
//     smaller size it reported while that report was unanswered);
//   - a VM whose last request was answered has exactly its acknowledged permit in the ledger,
//     and no permit had to be adopted from an agent (nothing acknowledged was lost);
//   - nothing beyond what a client asked for is in the ledger.
// Ends with a graceful SIGTERM (exit code 0) and a last exact comparison. Bounded: 8 kill cycles
// of about 1.5 s.
#include <signal.h>

#include <iostream>
#include <memory>
#include <random>
#include <string>

#include "absl/time/clock.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/permit_agents.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

std::string g_scheduler;  // the daemon binary (argv[1])

class CrashTest : public ::testing::Test {
 protected:
  std::string address() const { return "unix:" + dir_.path() + "/s.sock"; }

  // Starts the daemon on the data of the last one.
  void StartDaemon() {
    ++starts_;
    absl::StatusOr<std::unique_ptr<testing::Daemon>> daemon = testing::Daemon::Start(
        {.argv = {g_scheduler, "--data_dir=" + dir_.path() + "/data", "--listen=" + address(),
                  "--insecure", "--metrics_port=-1", "--recovery_grace=3s",
                  "--balance_interval=200ms", "--snapshot_every=3000"},
         .log = dir_.path() + "/scheduler.log",
         .ready_file = dir_.path() + "/scheduler.ready"});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
  }

  std::unique_ptr<rpc::scheduler::SchedulerService> Client() {
    return *rpc::scheduler::NewGrpcClient(address(), absl::Seconds(3));
  }

  testing::TempDir dir_{"schedcrash"};
  std::unique_ptr<testing::Daemon> daemon_;
  int starts_ = 0;
};

TEST_F(CrashTest, AcknowledgedPermitsSurviveSigkill) {
  ASSERT_FALSE(g_scheduler.empty()) << "usage: scheduler_crash_test PATH_TO_SCHEDULER";
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::unique_ptr<rpc::scheduler::SchedulerService> admin = Client();
  testing::PermitAgents agents({});
  ASSERT_TRUE(agents.Setup(*admin).ok());
  agents.Start([&] { return Client(); });

  std::mt19937_64 rng(99);
  for (int cycle = 0; cycle < 8 && !HasFailure(); ++cycle) {
    absl::SleepFor(absl::Milliseconds(800 + rng() % 800));
    daemon_->Kill();
    agents.Pause(true);
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    ASSERT_NO_FATAL_FAILURE(agents.Check(*admin, /*exact=*/false));
    agents.Pause(false);
  }
  // Let every VM be answered once more, then stop the clients and the daemon gracefully.
  absl::SleepFor(absl::Seconds(1));
  agents.Stop();
  EXPECT_EQ(daemon_->Stop(SIGTERM, absl::Seconds(30)), 0) << daemon_->LogTail();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  agents.Check(*admin, /*exact=*/true);
  EXPECT_EQ(daemon_->Stop(SIGTERM, absl::Seconds(30)), 0) << daemon_->LogTail();
  EXPECT_GT(agents.answered(), 1000) << "too little load to mean anything";
  EXPECT_GT(agents.failed(), 0) << "no request ever hit a dead scheduler";
  std::cout << "crash test: " << starts_ << " starts, " << agents.answered()
            << " answered requests, " << agents.failed() << " failed during crashes\n";
  if (HasFailure()) std::cout << daemon_->LogTail();
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) autoscale::g_scheduler = argv[1];
  return RUN_ALL_TESTS();
}
