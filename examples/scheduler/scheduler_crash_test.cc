// Crash test with real processes: the scheduler daemon, under load from several clients that
// act as agents over a unix socket, is killed with SIGKILL and restarted again and again. After
// every restart (clients paused) the test checks, against what the clients saw:
//   - no node's reservation exceeds its total;
//   - every VM's ledger amount covers what the VM may be using (its acknowledged permit, or the
//     smaller size it reported while that report was unanswered);
//   - a VM whose last request was answered has exactly its acknowledged permit in the ledger,
//     and no permit had to be adopted from an agent (nothing acknowledged was lost);
//   - nothing beyond what a client asked for is in the ledger.
// Ends with a graceful SIGTERM (exit code 0) and a last exact comparison. Bounded: 8 kill cycles
// of about 1.5 s.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/temp_dir.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

std::string g_scheduler;  // the daemon binary (argv[1])

constexpr int kNodes = 3, kClients = 6, kVmsPerClient = 3, kMaxCu = 8;

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  grpc::ChannelArguments args;
  // Reconnect fast after a restart.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

template <typename M>
M V(M m) {
  m.set_protocol_version(api::PROTOCOL_VERSION_1);
  return m;
}

api::Resources Cus(int64_t cpu_cu, int64_t mem_cu) {
  api::Resources r;
  r.set_milli_cpu(250 * cpu_cu);
  r.set_memory_bytes(kGiB * mem_cu);
  return r;
}

// What one agent knows about one VM, per resource in CUs: its acknowledged permit, what the VM
// may be using, and the targets of requests sent since the last answer (unknown outcome).
struct VmView {
  std::string node;
  int64_t acked[2] = {1, 1};
  int64_t usage[2] = {1, 1};
  std::vector<std::array<int64_t, 2>> pending;
};

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

  // Compares the ledger with the clients' views. `exact`: no request may be in doubt.
  void Check(bool exact) {
    auto stub = api::Scheduler::NewStub(Channel(address()));
    api::ListNodesResponse nodes;
    api::ListVmsResponse vms;
    api::StatusResponse status;
    {
      grpc::ClientContext c1, c2, c3;
      ASSERT_TRUE(stub->ListNodes(&c1, V(api::ListRequest()), &nodes).ok());
      ASSERT_TRUE(stub->ListVms(&c2, V(api::ListRequest()), &vms).ok());
      ASSERT_TRUE(stub->GetStatus(&c3, V(api::StatusRequest()), &status).ok());
    }
    EXPECT_EQ(status.adopted_permits(), 0u) << "an acknowledged permit was lost";
    ASSERT_EQ(nodes.nodes_size(), kNodes);
    for (const api::NodeState& n : nodes.nodes()) {
      EXPECT_LE(n.reserved().milli_cpu(), n.total().milli_cpu()) << n.node();
      EXPECT_LE(n.reserved().memory_bytes(), n.total().memory_bytes()) << n.node();
    }
    ASSERT_EQ(vms.vms_size(), kClients * kVmsPerClient);
    absl::MutexLock l(&mu_);
    for (const api::VmState& v : vms.vms()) {
      const VmView& view = views_.at(v.vm());
      const int64_t ledger[2] = {v.permit().milli_cpu() / 250, v.permit().memory_bytes() / kGiB};
      for (int k = 0; k < 2; ++k) {
        const char* what = k == 0 ? " cpu" : " memory";
        EXPECT_GE(ledger[k], view.usage[k]) << v.vm() << what << ": the VM may use more";
        if (view.pending.empty() || exact) {
          EXPECT_TRUE(view.pending.empty() || !exact);
          EXPECT_EQ(ledger[k], view.acked[k]) << v.vm() << what << ": acknowledged permit lost";
        } else {
          int64_t lo = view.acked[k], hi = view.acked[k];
          for (const auto& t : view.pending) {
            lo = std::min(lo, t[k]);
            hi = std::max(hi, t[k]);
          }
          EXPECT_GE(ledger[k], lo) << v.vm() << what;
          EXPECT_LE(ledger[k], hi) << v.vm() << what << ": more than anyone asked for";
        }
      }
    }
  }

  void Client(int c, std::atomic<bool>& stop) {
    auto stub = api::Scheduler::NewStub(Channel(address()));
    std::mt19937_64 rng(c);
    for (int i = 0; !stop.load(); ++i) {
      {
        absl::MutexLock l(&mu_);
        ++parked_;
        mu_.Await(absl::Condition(
            +[](bool* p) { return !*p; }, &paused_));
        --parked_;
      }
      const std::string vm = absl::StrCat("vm", c, "-", i % kVmsPerClient);
      const int64_t target[2] = {1 + static_cast<int64_t>(rng() % kMaxCu),
                                 1 + static_cast<int64_t>(rng() % kMaxCu)};
      api::PermitRequest r = V(api::PermitRequest());
      {
        absl::MutexLock l(&mu_);
        VmView& view = views_.at(vm);
        // The VM shrinks before it reports; it grows only into a permit.
        for (int k = 0; k < 2; ++k) view.usage[k] = std::min(view.usage[k], target[k]);
        view.pending.push_back({target[0], target[1]});
        r.set_node(view.node);
        *r.mutable_last_permit() = Cus(view.acked[0], view.acked[1]);
      }
      r.set_vm(vm);
      r.mutable_compute_unit()->set_milli_cpu(250);
      r.mutable_compute_unit()->set_memory_bytes(kGiB);
      *r.mutable_resources() = Cus(target[0], target[1]);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      api::PermitResponse resp;
      grpc::Status s = stub->Request(&ctx, r, &resp);
      if (!s.ok()) {
        if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
            s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          ADD_FAILURE() << vm << ": " << s.error_message();
        }
        ++failed_;
        absl::SleepFor(absl::Milliseconds(20));
        continue;
      }
      absl::MutexLock l(&mu_);
      VmView& view = views_.at(vm);
      const int64_t got[2] = {resp.permit().milli_cpu() / 250, resp.permit().memory_bytes() / kGiB};
      for (int k = 0; k < 2; ++k) {
        view.acked[k] = got[k];
        view.usage[k] = got[k];
      }
      view.pending.clear();
      ++acked_;
    }
  }

  void Pause(bool paused) {
    absl::MutexLock l(&mu_);
    paused_ = paused;
    if (paused) {
      mu_.Await(absl::Condition(
          +[](CrashTest* t) ABSL_NO_THREAD_SAFETY_ANALYSIS { return t->parked_ == kClients; },
          this));
    }
  }

  testing::TempDir dir_{"schedcrash"};
  std::unique_ptr<testing::Daemon> daemon_;
  int starts_ = 0;
  absl::Mutex mu_;
  std::map<std::string, VmView> views_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  int parked_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> acked_{0}, failed_{0};
};

TEST_F(CrashTest, AcknowledgedPermitsSurviveSigkill) {
  ASSERT_FALSE(g_scheduler.empty()) << "usage: scheduler_crash_test PATH_TO_SCHEDULER";
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  {
    auto stub = api::Scheduler::NewStub(Channel(address()));
    for (int n = 0; n < kNodes; ++n) {
      api::RegisterNodeRequest r = V(api::RegisterNodeRequest());
      r.set_node(absl::StrCat("node", n));
      *r.mutable_total() = Cus(16, 16);  // 6 VMs of up to 8 CU each: they compete
      grpc::ClientContext ctx;
      api::RegisterNodeResponse resp;
      ASSERT_TRUE(stub->RegisterNode(&ctx, r, &resp).ok());
    }
    for (int c = 0; c < kClients; ++c) {
      for (int i = 0; i < kVmsPerClient; ++i) {
        api::PlaceVmRequest r = V(api::PlaceVmRequest());
        r.set_vm(absl::StrCat("vm", c, "-", i));
        r.mutable_bounds()->set_min_cu(1);
        r.mutable_bounds()->set_max_cu(kMaxCu);
        grpc::ClientContext ctx;
        api::PlaceVmResponse resp;
        grpc::Status s = stub->PlaceVm(&ctx, r, &resp);
        ASSERT_TRUE(s.ok()) << s.error_message();
        absl::MutexLock l(&mu_);
        views_[r.vm()].node = resp.node();
      }
    }
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) clients.emplace_back([&, c] { Client(c, stop); });
  std::mt19937_64 rng(99);
  for (int cycle = 0; cycle < 8 && !HasFailure(); ++cycle) {
    absl::SleepFor(absl::Milliseconds(800 + rng() % 800));
    daemon_->Kill();
    Pause(true);
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    Check(/*exact=*/false);
    Pause(false);
  }
  // Let every VM be answered once more, then stop the clients and the daemon gracefully.
  absl::SleepFor(absl::Seconds(1));
  Pause(true);
  stop = true;
  Pause(false);
  for (auto& t : clients) t.join();
  {
    absl::MutexLock l(&mu_);
    for (auto& [name, view] : views_) {
      if (!view.pending.empty()) ADD_FAILURE() << name << " was never answered after a restart";
    }
  }
  EXPECT_EQ(daemon_->Stop(SIGTERM, absl::Seconds(30)), 0) << daemon_->LogTail();
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Check(/*exact=*/true);
  EXPECT_EQ(daemon_->Stop(SIGTERM, absl::Seconds(30)), 0) << daemon_->LogTail();
  EXPECT_GT(acked_.load(), 1000) << "too little load to mean anything";
  EXPECT_GT(failed_.load(), 0) << "no request ever hit a dead scheduler";
  std::cout << "crash test: " << starts_ << " starts, " << acked_.load() << " answered requests, "
            << failed_.load() << " failed during crashes\n";
  if (HasFailure()) std::cout << daemon_->LogTail();
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) autoscale::g_scheduler = argv[1];
  return RUN_ALL_TESTS();
}
