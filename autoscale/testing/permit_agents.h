// Clients that act as agents against a scheduler while a test kills, freezes or cuts it off, and
// the audit of the scheduler's ledger against what the clients were told. For the crash and
// failover tests of the scheduler daemons (examples/scheduler).
//
// Each client owns some VMs and sends one permit request at a time for a random size, as fast as
// requests are answered. Per VM it keeps, per resource in compute units: the acknowledged permit,
// what the VM may be using (it shrinks before it reports and grows only into a permit), and the
// sizes of requests sent since the last answer (their outcome is unknown). A client sends its
// last permit only while no request is in doubt: a shrink that landed but whose answer was lost
// would leave it above the ledger's, which the ledger would adopt (safely). Sent only when
// certain, any adoption is an acknowledged permit the scheduler lost.
//
//   testing::PermitAgents agents({});
//   ASSERT_TRUE(agents.Setup(*admin).ok());             // nodes and VMs, through any scheduler
//   agents.Start([&] { return *NewGrpcClient(address); });
//   ... kill the scheduler, start it again ...
//   agents.Pause(true);
//   agents.Check(*admin, /*exact=*/false);              // gtest failures for what is wrong
//   agents.Pause(false);
//   agents.Stop();
//   agents.Check(*admin, /*exact=*/true);
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::testing {

class PermitAgents {
 public:
  struct Options {
    int nodes = 3;
    int clients = 6;
    int vms_per_client = 3;
    // Each VM asks for 1..max_cu compute units of 250m / 1 GiB per resource; a node holds 16.
    int max_cu = 8;
  };

  explicit PermitAgents(Options options);
  // Stops the clients.
  ~PermitAgents();
  PermitAgents(const PermitAgents&) = delete;
  PermitAgents& operator=(const PermitAgents&) = delete;

  // Registers the nodes ("node0", ...) and places every VM ("vm<client>-<i>"), retrying for up
  // to 15 s while no scheduler serves.
  absl::Status Setup(rpc::scheduler::SchedulerService& admin);
  // Starts the clients, each with a connection of its own from `connect`.
  void Start(std::function<std::unique_ptr<rpc::scheduler::SchedulerService>()> connect);
  // Parks every client between two requests (true), or lets them go on (false).
  void Pause(bool paused);
  // Stops the clients after their current request and fails the test for any VM whose last
  // request was never answered.
  void Stop();

  // The ledger, as `scheduler` lists it (retried for up to 15 s while a scheduler takes over),
  // against what the clients saw: no permit adopted, no node above its total, every VM's permit
  // covering what it may use, and equal to its acknowledged permit when nothing is in doubt (or
  // `exact`), within what was asked otherwise. Reports gtest failures. Clients must be paused.
  void Check(rpc::scheduler::SchedulerService& scheduler, bool exact);

  // Since the monotonic time `t_ns` (NowNs): from the last answer to a request sent before it to
  // the first answer to one sent after it (waiting up to 20 s; infinite if none came).
  absl::Duration Failover(int64_t t_ns);
  // The longest time without an answer since `t_ns`.
  absl::Duration LongestGap(int64_t t_ns);
  static int64_t NowNs();

  int64_t answered() const { return answered_.load(); }
  int64_t failed() const { return failed_.load(); }

 private:
  struct VmView {
    std::string node;
    std::array<int64_t, 2> acked = {1, 1};
    std::array<int64_t, 2> usage = {1, 1};
    std::vector<std::array<int64_t, 2>> pending;
  };
  struct Answer {
    int64_t sent_ns;
    int64_t received_ns;
  };

  void Client(int c, std::unique_ptr<rpc::scheduler::SchedulerService> scheduler);

  const Options options_;
  absl::Mutex mu_;
  std::map<std::string, VmView> views_ ABSL_GUARDED_BY(mu_);
  std::vector<Answer> answers_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  int parked_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> answered_{0}, failed_{0};
  std::vector<std::thread> threads_;
};

}  // namespace autoscale::testing
