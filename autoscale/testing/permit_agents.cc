#include "autoscale/testing/permit_agents.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/api/scheduler.pb.h"
#include "autoscale/base/units.h"
#include "gtest/gtest.h"

namespace autoscale::testing {
namespace {

constexpr int64_t kCuMilliCpu = 250;

api::v1::Resources Cus(int64_t cpu_cu, int64_t mem_cu) {
  api::v1::Resources r;
  r.set_milli_cpu(kCuMilliCpu * cpu_cu);
  r.set_memory_bytes(kGiB * mem_cu);
  return r;
}

// Retries `call` while it fails, for up to 15 s (a scheduler starting or taking over).
template <typename Call>
auto Retried(Call call) {
  auto result = call();
  for (absl::Time end = absl::Now() + absl::Seconds(15); !result.ok() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(50));
    result = call();
  }
  return result;
}

}  // namespace

PermitAgents::PermitAgents(Options options) : options_(options) {}

PermitAgents::~PermitAgents() {
  stop_ = true;
  Pause(false);
  for (std::thread& t : threads_) t.join();
}

int64_t PermitAgents::NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status PermitAgents::Setup(rpc::scheduler::SchedulerService& admin) {
  for (int n = 0; n < options_.nodes; ++n) {
    api::v1::RegisterNodeRequest r;
    r.set_node(absl::StrCat("node", n));
    *r.mutable_total() = Cus(16, 16);  // several VMs of up to max_cu each: they compete
    absl::StatusOr<api::v1::RegisterNodeResponse> done =
        Retried([&] { return admin.RegisterNode(r); });
    if (!done.ok()) return done.status();
  }
  for (int c = 0; c < options_.clients; ++c) {
    for (int i = 0; i < options_.vms_per_client; ++i) {
      api::v1::PlaceVmRequest r;
      r.set_vm(absl::StrCat("vm", c, "-", i));
      r.mutable_bounds()->set_min_cu(1);
      r.mutable_bounds()->set_max_cu(options_.max_cu);
      absl::StatusOr<api::v1::PlaceVmResponse> p = admin.PlaceVm(r);
      if (!p.ok()) return p.status();
      absl::MutexLock l(&mu_);
      views_[r.vm()].node = p->node();
    }
  }
  return absl::OkStatus();
}

void PermitAgents::Start(
    std::function<std::unique_ptr<rpc::scheduler::SchedulerService>()> connect) {
  for (int c = 0; c < options_.clients; ++c) {
    threads_.emplace_back(&PermitAgents::Client, this, c, connect());
  }
}

void PermitAgents::Client(int c, std::unique_ptr<rpc::scheduler::SchedulerService> scheduler) {
  std::mt19937_64 rng(c);
  for (int i = 0; !stop_.load(); ++i) {
    {
      absl::MutexLock l(&mu_);
      ++parked_;
      mu_.Await(absl::Condition(
          +[](bool* p) { return !*p; }, &paused_));
      --parked_;
    }
    if (stop_.load()) return;
    const std::string vm = absl::StrCat("vm", c, "-", i % options_.vms_per_client);
    const std::array<int64_t, 2> target = {1 + static_cast<int64_t>(rng() % options_.max_cu),
                                           1 + static_cast<int64_t>(rng() % options_.max_cu)};
    api::v1::PermitRequest r;
    {
      absl::MutexLock l(&mu_);
      VmView& view = views_.at(vm);
      if (view.pending.empty()) *r.mutable_last_permit() = Cus(view.acked[0], view.acked[1]);
      for (int k = 0; k < 2; ++k) view.usage[k] = std::min(view.usage[k], target[k]);
      view.pending.push_back(target);
      r.set_node(view.node);
    }
    r.set_vm(vm);
    r.mutable_compute_unit()->set_milli_cpu(kCuMilliCpu);
    r.mutable_compute_unit()->set_memory_bytes(kGiB);
    *r.mutable_resources() = Cus(target[0], target[1]);
    const int64_t sent = NowNs();
    absl::StatusOr<api::v1::PermitResponse> resp = scheduler->Request(r);
    const int64_t received = NowNs();
    if (!resp.ok()) {
      if (!absl::IsUnavailable(resp.status()) && !absl::IsDeadlineExceeded(resp.status())) {
        ADD_FAILURE() << vm << ": " << resp.status();
      }
      ++failed_;
      absl::SleepFor(absl::Milliseconds(5));
      continue;
    }
    absl::MutexLock l(&mu_);
    VmView& view = views_.at(vm);
    view.acked = {resp->permit().milli_cpu() / kCuMilliCpu, resp->permit().memory_bytes() / kGiB};
    view.usage = view.acked;
    view.pending.clear();
    answers_.push_back({sent, received});
    ++answered_;
  }
}

void PermitAgents::Pause(bool paused) {
  absl::MutexLock l(&mu_);
  paused_ = paused;
  if (paused && !stop_.load()) {
    mu_.Await(absl::Condition(
        +[](PermitAgents* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return a->parked_ == static_cast<int>(a->threads_.size());
        },
        this));
  }
}

void PermitAgents::Stop() {
  Pause(true);
  stop_ = true;
  Pause(false);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  absl::MutexLock l(&mu_);
  for (const auto& [name, view] : views_) {
    if (!view.pending.empty()) ADD_FAILURE() << name << " was never answered after a failure";
  }
}

void PermitAgents::Check(rpc::scheduler::SchedulerService& scheduler, bool exact) {
  absl::StatusOr<api::v1::ListNodesResponse> nodes;
  absl::StatusOr<api::v1::ListVmsResponse> vms;
  absl::StatusOr<api::v1::StatusResponse> status;
  for (absl::Time end = absl::Now() + absl::Seconds(15); absl::Now() < end;) {
    nodes = scheduler.ListNodes({});
    vms = scheduler.ListVms({});
    status = scheduler.GetStatus({});
    if (nodes.ok() && vms.ok() && status.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(nodes.ok() && vms.ok() && status.ok())
      << nodes.status() << vms.status() << status.status();
  EXPECT_EQ(status->adopted_permits(), 0u) << "an acknowledged permit was lost";
  ASSERT_EQ(nodes->nodes_size(), options_.nodes);
  for (const api::v1::NodeState& n : nodes->nodes()) {
    EXPECT_LE(n.reserved().milli_cpu(), n.total().milli_cpu()) << n.node();
    EXPECT_LE(n.reserved().memory_bytes(), n.total().memory_bytes()) << n.node();
  }
  ASSERT_EQ(vms->vms_size(), options_.clients * options_.vms_per_client);
  absl::MutexLock l(&mu_);
  for (const api::v1::VmState& v : vms->vms()) {
    const VmView& view = views_.at(v.vm());
    const int64_t ledger[2] = {v.permit().milli_cpu() / kCuMilliCpu,
                               v.permit().memory_bytes() / kGiB};
    for (int k = 0; k < 2; ++k) {
      const char* what = k == 0 ? " cpu" : " memory";
      EXPECT_GE(ledger[k], view.usage[k]) << v.vm() << what << ": the VM may use more";
      if (view.pending.empty() || exact) {
        EXPECT_TRUE(view.pending.empty()) << v.vm() << ": a request still in doubt";
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

absl::Duration PermitAgents::Failover(int64_t t_ns) {
  for (absl::Time end = absl::Now() + absl::Seconds(20); absl::Now() < end;) {
    {
      absl::MutexLock l(&mu_);
      int64_t last_old = 0, first_new = 0;
      for (const Answer& a : answers_) {
        if (a.sent_ns < t_ns) last_old = std::max(last_old, a.received_ns);
        if (a.sent_ns >= t_ns && (first_new == 0 || a.received_ns < first_new)) {
          first_new = a.received_ns;
        }
      }
      if (first_new != 0) return absl::Nanoseconds(first_new - last_old);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::InfiniteDuration();
}

absl::Duration PermitAgents::LongestGap(int64_t t_ns) {
  absl::MutexLock l(&mu_);
  std::vector<int64_t> times;
  for (const Answer& a : answers_) {
    if (a.received_ns >= t_ns) times.push_back(a.received_ns);
  }
  std::sort(times.begin(), times.end());
  int64_t gap = times.empty() ? 0 : times.front() - t_ns;
  for (size_t i = 1; i < times.size(); ++i) gap = std::max(gap, times[i] - times[i - 1]);
  return absl::Nanoseconds(gap);
}

}  // namespace autoscale::testing
