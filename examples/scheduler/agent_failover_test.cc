// An agent's runner (autoscale/agent) across scheduler failovers: two scheduler daemons on a
// 3-member etcd cluster (real processes), the runner talking to them through the scheduler client
// given both addresses, a VM and a monitor that record what they are asked. The active scheduler
// is killed (SIGKILL) twice:
//   - while the VM wants to grow: it grows by no more than its last permit until the new leader
//     serves, and then only into a permit that leader granted;
//   - while the VM shrinks: the shrink goes ahead (the monitor approves; the scheduler is not
//     asked first) and is reported to the new leader once it serves, whose ledger then holds it.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/agent/events.h"
#include "autoscale/agent/runner.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/layout.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/scheduler/election.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/etcd_cluster.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

std::string g_scheduler;  // the daemon binary (argv[1])

using core::Resources;
constexpr Resources kCu{1000, kGiB};
constexpr char kPrefix[] = "/agents";

Resources Cus(int n) { return kCu * n; }
std::string Text(const api::v1::Resources& r) {
  return Resources{r.milli_cpu(), r.memory_bytes()}.ToString();
}

// What the runner asked of the scheduler, the VM and the monitor, and what came back, in order.
class CallLog {
 public:
  void Add(std::string entry) {
    absl::MutexLock lock(&mu_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> Entries() const {
    absl::MutexLock lock(&mu_);
    return entries_;
  }
  int size() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(entries_.size());
  }
  // Waits (up to `timeout`) for an entry equal to `entry` at index `from` or later; its index.
  int Await(const std::string& entry, int from = 0,
            absl::Duration timeout = absl::Seconds(30)) const {
    for (const absl::Time end = absl::Now() + timeout; absl::Now() < end;) {
      {
        absl::MutexLock lock(&mu_);
        for (size_t i = from; i < entries_.size(); ++i) {
          if (entries_[i] == entry) return static_cast<int>(i);
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return -1;
  }
  std::string Dump() const {
    std::string out;
    for (const std::string& e : Entries()) absl::StrAppend(&out, "\n  ", e);
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

class RecordingVm : public agent::VmDriver {
 public:
  RecordingVm(Resources at, CallLog& log) : at_(at), log_(log) {}
  absl::StatusOr<Resources> Current() override {
    absl::MutexLock lock(&mu_);
    return at_;
  }
  absl::StatusOr<Resources> Resize(const Resources& target, absl::Duration) override {
    log_.Add("vm " + target.ToString());
    absl::MutexLock lock(&mu_);
    at_ = target;
    return at_;
  }

 private:
  absl::Mutex mu_;
  Resources at_ ABSL_GUARDED_BY(mu_);
  CallLog& log_;
};

// The scheduler client, its requests and their outcomes recorded.
class RecordingScheduler : public rpc::scheduler::SchedulerService {
 public:
  RecordingScheduler(std::unique_ptr<SchedulerService> real, CallLog& log)
      : real_(std::move(real)), log_(log) {}
  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& r) override {
    log_.Add("scheduler " + Text(r.resources()));
    absl::StatusOr<api::v1::PermitResponse> answer = real_->Request(r);
    log_.Add(answer.ok() ? "scheduler ok " + Text(answer->permit())
                         : absl::StrCat("scheduler failed ",
                                        absl::StatusCodeToString(answer.status().code())));
    return answer;
  }
  absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
      const api::v1::RegisterNodeRequest& r) override {
    return real_->RegisterNode(r);
  }
  absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
      const api::v1::MigrationOrdersRequest& r) override {
    return real_->GetMigrationOrders(r);
  }
  absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
      const api::v1::MigrationResult& r) override {
    return real_->ReportMigration(r);
  }
  absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(const api::v1::PlaceVmRequest& r) override {
    return real_->PlaceVm(r);
  }
  absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(
      const api::v1::ReleaseVmRequest& r) override {
    return real_->ReleaseVm(r);
  }
  absl::StatusOr<api::v1::ListNodesResponse> ListNodes(const api::v1::ListRequest& r) override {
    return real_->ListNodes(r);
  }
  absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest& r) override {
    return real_->ListVms(r);
  }
  absl::StatusOr<api::v1::StatusResponse> GetStatus(const api::v1::StatusRequest& r) override {
    return real_->GetStatus(r);
  }

 private:
  std::unique_ptr<SchedulerService> real_;
  CallLog& log_;
};

// Approves every downscale.
class ApprovingMonitor : public rpc::monitor::MonitorClient {
 public:
  explicit ApprovingMonitor(CallLog& log) : log_(log) {}
  absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(const api::v1::Resources& target,
                                                            absl::Duration) override {
    log_.Add("monitor downscale " + Text(target));
    api::v1::DownscaleResult r;
    r.set_ok(true);
    return r;
  }
  absl::Status NotifyUpscale(const api::v1::Resources& granted, absl::Duration) override {
    log_.Add("monitor upscale " + Text(granted));
    return absl::OkStatus();
  }
  absl::Status HealthCheck(absl::Duration) override { return absl::OkStatus(); }
  bool connected() const override { return true; }

 private:
  CallLog& log_;
};

class AgentFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_ETCD();
    ASSERT_FALSE(g_scheduler.empty()) << "usage: agent_failover_test PATH_TO_SCHEDULER";
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> c =
        testing::EtcdCluster::Start({.members = 3});
    ASSERT_TRUE(c.ok()) << c.status();
    etcd_cluster_ = *std::move(c);
    etcd_ = *ledger::etcd::EtcdClient::Connect(etcd_cluster_->ClientOptions());
    for (int i = 0; i < 2; ++i)
      addresses_[i] = absl::StrCat("unix:", dir_.path(), "/s", i, ".sock");
    for (int i = 0; i < 2; ++i) ASSERT_NO_FATAL_FAILURE(StartScheduler(i));
  }

  void TearDown() override {
    if (runner_) runner_->Stop();
  }

  void StartScheduler(int i) {
    absl::StatusOr<std::unique_ptr<testing::Daemon>> d = testing::Daemon::Start(
        {.argv = {g_scheduler, "--store=etcd:" + etcd_cluster_->Endpoints(),
                  absl::StrCat("--etcd_prefix=", kPrefix), "--listen=" + addresses_[i],
                  "--insecure", "--metrics_port=-1", "--lease_ttl=2s", "--recovery_grace=2s"},
         .log = absl::StrCat(dir_.path(), "/scheduler", i, ".log"),
         .ready_file = absl::StrCat(dir_.path(), "/scheduler", i, ".ready")});
    ASSERT_TRUE(d.ok()) << d.status();
    daemons_[i] = *std::move(d);
  }

  int Leader() {
    absl::StatusOr<std::string> leader = scheduler::LeaderOf(*etcd_, kPrefix);
    for (int i = 0; i < 2; ++i) {
      if (leader.ok() && *leader == addresses_[i]) return i;
    }
    return -1;
  }

  std::unique_ptr<rpc::scheduler::SchedulerService> Client() {
    return *rpc::scheduler::NewGrpcClient(addresses_[0] + "," + addresses_[1], absl::Seconds(2));
  }

  // The VM's permit in the leader's ledger (waiting for a leader).
  Resources Permit() {
    std::unique_ptr<rpc::scheduler::SchedulerService> s = Client();
    for (const absl::Time end = absl::Now() + absl::Seconds(15); absl::Now() < end;) {
      absl::StatusOr<api::v1::ListVmsResponse> vms = s->ListVms({});
      if (vms.ok() && vms->vms_size() == 1) {
        return {vms->vms(0).permit().milli_cpu(), vms->vms(0).permit().memory_bytes()};
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return {};
  }

  void SendMetrics(double load) {
    api::v1::Metrics m;
    m.set_load_avg_1m(load);
    m.set_load_avg_5m(load);
    m.set_memory_usage_bytes(kGiB / 4);
    for (const absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end;) {
      {
        absl::MutexLock lock(&mu_);
        if (callbacks_.on_metrics) {
          callbacks_.on_metrics(m);
          return;
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    FAIL() << "the runner never connected to the monitor";
  }

  // Every VM resize to a size above `from` at index `start` or later comes after a permit of at
  // least that size granted at `start` or later.
  void ExpectGrowthOnlyIntoNewPermits(int start, const Resources& from) {
    const std::vector<std::string> log = log_.Entries();
    Resources permitted = from;
    for (size_t i = start; i < log.size(); ++i) {
      for (int n = 1; n <= 4; ++n) {
        if (log[i] == "scheduler ok " + Cus(n).ToString()) permitted = Cus(n);
        if (log[i] == "vm " + Cus(n).ToString()) {
          EXPECT_FALSE(Cus(n).AnyGreaterThan(permitted))
              << "the VM grew to " << Cus(n).ToString() << " with a permit of "
              << permitted.ToString() << log_.Dump();
        }
      }
    }
  }

  testing::TempDir dir_{"agentfo"};
  std::unique_ptr<testing::EtcdCluster> etcd_cluster_;
  std::shared_ptr<ledger::etcd::EtcdClient> etcd_;
  std::string addresses_[2];
  std::unique_ptr<testing::Daemon> daemons_[2];
  CallLog log_;
  agent::EventLog events_;
  Metrics metrics_;
  absl::Mutex mu_;
  rpc::monitor::MonitorClient::Callbacks callbacks_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<agent::Runner> runner_;
};

TEST_F(AgentFailoverTest, NoGrowthBeyondTheLastPermitAndShrinksReportedToTheNewLeader) {
  std::unique_ptr<rpc::scheduler::SchedulerService> admin = Client();
  api::v1::RegisterNodeRequest node;
  node.set_node("n1");
  *node.mutable_total() = core::ToProto(Cus(8));
  absl::StatusOr<api::v1::RegisterNodeResponse> registered;
  for (absl::Time end = absl::Now() + absl::Seconds(15); absl::Now() < end;) {
    registered = admin->RegisterNode(node);  // until a leader serves
    if (registered.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(registered.ok()) << registered.status();
  api::v1::PlaceVmRequest place;
  place.set_vm("vm1");
  place.set_node("n1");
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(4);
  place.mutable_compute_unit()->set_milli_cpu(kCu.milli_cpu);
  place.mutable_compute_unit()->set_memory_bytes(kCu.memory_bytes);
  *place.mutable_initial() = core::ToProto(Cus(1));
  ASSERT_TRUE(admin->PlaceVm(place).ok());

  auto scheduler = std::make_unique<RecordingScheduler>(Client(), log_);
  agent::RunnerOptions o;
  o.node = "n1";
  o.vm = "vm1";
  o.state.compute_unit = kCu;
  o.bounds = {1, 4};
  o.monitor_address = "in-test";
  agent::MonitorConnector connect =
      [this](const std::string&, const rpc::monitor::AgentBinding&,
             rpc::monitor::MonitorClient::Callbacks callbacks,
             absl::Duration) -> absl::StatusOr<std::unique_ptr<rpc::monitor::MonitorClient>> {
    absl::MutexLock lock(&mu_);
    callbacks_ = std::move(callbacks);
    return std::make_unique<ApprovingMonitor>(log_);
  };
  runner_ = std::make_unique<agent::Runner>(o, std::make_unique<RecordingVm>(Cus(1), log_),
                                            *scheduler, connect, events_, metrics_, Clock::Real());
  ASSERT_TRUE(runner_->Start().ok());

  // Grows to 3 CU under the first leader.
  SendMetrics(2.5);  // CPU goal: 2.5 / 0.9 -> 3 CU
  ASSERT_GE(log_.Await("vm " + Cus(3).ToString()), 0) << log_.Dump();
  ASSERT_EQ(Permit(), Cus(3));

  // 1. The leader dies while the VM wants 4 CU.
  int leader = Leader();
  ASSERT_GE(leader, 0);
  daemons_[leader]->Kill();
  const int killed_at = log_.size();
  SendMetrics(3.5);  // -> 4 CU
  const int grown = log_.Await("vm " + Cus(4).ToString(), killed_at);
  ASSERT_GE(grown, 0) << "the VM never grew once the new leader served:" << log_.Dump();
  ASSERT_NO_FATAL_FAILURE(ExpectGrowthOnlyIntoNewPermits(killed_at, Cus(3)));
  const std::vector<std::string> during = log_.Entries();
  EXPECT_TRUE(
      std::any_of(during.begin() + killed_at, during.begin() + grown,
                  [](const std::string& e) { return absl::StartsWith(e, "scheduler failed"); }))
      << "the runner never met the dead leader, so the test showed nothing:" << log_.Dump();
  EXPECT_EQ(Permit(), Cus(4));
  ASSERT_NO_FATAL_FAILURE(StartScheduler(leader));

  // 2. The new leader dies while the VM shrinks.
  leader = Leader();
  ASSERT_GE(leader, 0);
  daemons_[leader]->Kill();
  const int killed2_at = log_.size();
  SendMetrics(0);
  ASSERT_GE(log_.Await("vm " + Cus(1).ToString(), killed2_at), 0) << log_.Dump();
  const int reported = log_.Await("scheduler ok " + Cus(1).ToString(), killed2_at);
  ASSERT_GE(reported, 0) << "the shrink never reached the new leader:" << log_.Dump();
  EXPECT_EQ(Permit(), Cus(1)) << "the new leader's ledger holds the smaller size";
  ASSERT_NO_FATAL_FAILURE(ExpectGrowthOnlyIntoNewPermits(killed2_at, Cus(4)));
  std::cout << "agent failover: " << log_.Dump() << "\n";
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) autoscale::g_scheduler = argv[1];
  return RUN_ALL_TESTS();
}
