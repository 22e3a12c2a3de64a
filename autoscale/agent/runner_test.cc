// The runner's executors against the real ledger (in process), a VM driver and a monitor that
// record what they are asked: the ordering rules (grow scheduler -> VM -> monitor, shrink
// monitor -> VM -> scheduler), partial grants, and what happens when a part fails. The QMP driver
// and the gRPC monitor are exercised with QEMU and a booted guest in examples/demo's e2e tests.
#include "autoscale/agent/runner.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "autoscale/scheduler/request_handler.h"
#include "autoscale/testing/eventually.h"
#include "gtest/gtest.h"

namespace autoscale::agent {
namespace {

using core::Resources;
using testing::Eventually;

constexpr Resources kCu{1000, kGiB};

Resources Cus(int n) { return kCu * n; }

std::string Text(const api::v1::Resources& r) {
  return Resources{r.milli_cpu(), r.memory_bytes()}.ToString();
}

// What the runner asked of the scheduler, the VM and the monitor, in order.
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
  // The index of the first entry equal to `entry` after index `after`, or -1.
  int Find(const std::string& entry, int after = -1) const {
    absl::MutexLock lock(&mu_);
    for (size_t i = after + 1; i < entries_.size(); ++i) {
      if (entries_[i] == entry) return static_cast<int>(i);
    }
    return -1;
  }
  // Waits (up to 15 s) for `entry` after index `after`; its index, or -1.
  int Await(const std::string& entry, int after = -1) const {
    const absl::Time end = absl::Now() + absl::Seconds(15);
    while (absl::Now() < end) {
      if (int i = Find(entry, after); i >= 0) return i;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return -1;
  }
  bool Any(const std::string& prefix) const {
    absl::MutexLock lock(&mu_);
    for (const std::string& e : entries_) {
      if (absl::StartsWith(e, prefix)) return true;
    }
    return false;
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

class RecordingVm : public VmDriver {
 public:
  RecordingVm(Resources at, CallLog& log) : at_(at), log_(log) {}
  absl::StatusOr<Resources> Current() override {
    absl::MutexLock lock(&mu_);
    if (!fail_.ok()) return fail_;
    return at_;
  }
  absl::StatusOr<Resources> Resize(const Resources& target, absl::Duration) override {
    log_.Add("vm " + target.ToString());
    absl::MutexLock lock(&mu_);
    if (!fail_.ok()) return fail_;
    at_ = target;
    return at_;
  }
  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu_);
    fail_ = std::move(s);
  }

 private:
  absl::Mutex mu_;
  Resources at_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
  CallLog& log_;
};

// The in-process scheduler, recorded, and able to be "down" (every call fails as a lost
// connection would).
class RecordingScheduler : public rpc::scheduler::InProcessClient {
 public:
  RecordingScheduler(rpc::scheduler::SchedulerService& real, CallLog& log)
      : InProcessClient(real), log_(log) {}
  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& r) override {
    log_.Add("scheduler " + Text(r.resources()));
    if (down_) return absl::UnavailableError("connection refused");
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* silent) { return !*silent; }, &silent_));
    return InProcessClient::Request(r);
  }
  void RequestAsync(const api::v1::PermitRequest& r,
                    std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) override {
    {
      absl::MutexLock lock(&mu_);
      if (silent_) {
        log_.Add("scheduler " + Text(r.resources()) + " (unanswered)");
        unanswered_.push_back(std::move(done));
        return;
      }
    }
    done(Request(r));
  }
  // While silent the scheduler takes requests and never answers them (until Answer).
  void SetSilent(bool silent) {
    absl::MutexLock lock(&mu_);
    silent_ = silent;
  }
  // Answers the requests taken while silent, late, with `answer`.
  void AnswerLate(const absl::Status& answer) {
    std::vector<std::function<void(absl::StatusOr<api::v1::PermitResponse>)>> dones;
    {
      absl::MutexLock lock(&mu_);
      dones.swap(unanswered_);
    }
    for (auto& done : dones) done(answer);
  }
  std::atomic<bool> down_{false};

 private:
  CallLog& log_;
  absl::Mutex mu_;
  bool silent_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void(absl::StatusOr<api::v1::PermitResponse>)>> unanswered_
      ABSL_GUARDED_BY(mu_);
};

// What the test's monitors share: whether they approve downscales, the health checks they
// answered, and (when set) a notification their downscale answers wait for.
struct MonitorScript {
  std::atomic<bool> approve{true};
  std::atomic<int> health_checks{0};
  std::atomic<absl::Notification*> hold_downscale{nullptr};
};

class RecordingMonitor : public rpc::monitor::MonitorClient {
 public:
  RecordingMonitor(CallLog& log, MonitorScript& script, Callbacks callbacks)
      : log_(log), approve_(script.approve), script_(script), callbacks_(std::move(callbacks)) {}
  // As the real clients do, a destroyed client reports the end of its stream.
  ~RecordingMonitor() override {
    if (callbacks_.on_closed) callbacks_.on_closed(absl::CancelledError("client destroyed"));
  }
  absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(const api::v1::Resources& target,
                                                            absl::Duration) override {
    log_.Add("monitor downscale " + Text(target));
    if (absl::Notification* hold = script_.hold_downscale.load()) hold->WaitForNotification();
    api::v1::DownscaleResult r;
    r.set_ok(approve_);
    r.set_status(approve_ ? "enough headroom" : "would leave too little headroom");
    return r;
  }
  absl::Status NotifyUpscale(const api::v1::Resources& granted, absl::Duration) override {
    log_.Add("monitor upscale " + Text(granted));
    return absl::OkStatus();
  }
  absl::Status HealthCheck(absl::Duration) override {
    ++script_.health_checks;
    return absl::OkStatus();
  }
  bool connected() const override { return true; }

 private:
  CallLog& log_;
  std::atomic<bool>& approve_;
  MonitorScript& script_;
  const Callbacks callbacks_;
};

class RunnerTest : public ::testing::Test {
 protected:
  RunnerTest() : ledger_({.placement = {.randomize = false}}), handler_(ledger_, kCu) {}

  // A node of `node_cus` CUs with vm1 placed at 1 CU, bounds 1..4, and a runner for it.
  void Start(int node_cus, bool with_monitor = true) {
    api::v1::RegisterNodeRequest node;
    node.set_node("n1");
    *node.mutable_total() = core::ToProto(Cus(node_cus));
    node.set_agent_address("n1:7000");
    ASSERT_TRUE(scheduler_.RegisterNode(node).ok());
    Place("vm1", {1, 4});
    auto vm = std::make_unique<RecordingVm>(kCu, log_);
    vm_ = vm.get();
    RunnerOptions o;
    o.node = "n1";
    o.vm = "vm1";
    o.state.compute_unit = kCu;
    o.state.timings = timings_;
    o.bounds = {1, 4};
    if (with_monitor) o.monitor_address = "in-test";
    o.monitor_retry = absl::Milliseconds(50);
    o.monitor_health_interval = absl::Milliseconds(10);
    MonitorConnector connect =
        [this](const std::string&, const rpc::monitor::AgentBinding&,
               rpc::monitor::MonitorClient::Callbacks callbacks,
               absl::Duration) -> absl::StatusOr<std::unique_ptr<rpc::monitor::MonitorClient>> {
      {
        absl::MutexLock lock(&mu_);
        if (!connect_error_.ok()) return connect_error_;
      }
      // What a monitor sends the moment an agent connects arrives before Connect returns.
      if (on_connect_) on_connect_(callbacks);
      absl::MutexLock lock(&mu_);
      callbacks_ = callbacks;
      ++connects_;
      return std::make_unique<RecordingMonitor>(log_, script_, std::move(callbacks));
    };
    runner_ = std::make_unique<Runner>(o, std::move(vm), scheduler_, connect, events_, metrics_,
                                       Clock::Real());
    ASSERT_TRUE(runner_->Start().ok());
  }

  void Place(const std::string& vm, core::Bounds bounds) {
    api::v1::PlaceVmRequest place;
    place.set_vm(vm);
    place.mutable_bounds()->set_min_cu(bounds.min_cu);
    place.mutable_bounds()->set_max_cu(bounds.max_cu);
    place.set_node("n1");
    absl::StatusOr<api::v1::PlaceVmResponse> p = scheduler_.PlaceVm(place);
    ASSERT_TRUE(p.ok()) << p.status();
  }

  // Metrics from the monitor's stream: a load average and the memory used.
  void SendMetrics(double load, int64_t memory_bytes) {
    api::v1::Metrics m;
    m.set_load_avg_1m(load);
    m.set_load_avg_5m(load);
    m.set_memory_usage_bytes(memory_bytes);
    SendMetrics(m);
  }
  void SendMetrics(const api::v1::Metrics& m) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
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

  bool HasEvent(api::v1::EventKind kind) { return Count(kind) > 0; }
  int Count(api::v1::EventKind kind) {
    int n = 0;
    for (const Event& e : events_.Since(0)) n += e.kind == kind;
    return n;
  }
  int Connects() {
    absl::MutexLock lock(&mu_);
    return connects_;
  }

  Resources Reserved(const std::string& vm) {
    absl::StatusOr<api::v1::ListVmsResponse> vms = scheduler_.ListVms(api::v1::ListRequest());
    if (!vms.ok()) return {};
    for (const api::v1::VmState& v : vms->vms()) {
      if (v.vm() == vm) return {v.permit().milli_cpu(), v.permit().memory_bytes()};
    }
    return {};
  }

  void TearDown() override {
    scheduler_.SetSilent(false);  // a request blocked in it ends
    if (runner_) runner_->Stop();
  }

  CallLog log_;
  ledger::Ledger ledger_;
  scheduler::RequestHandler handler_;
  RecordingScheduler scheduler_{handler_, log_};
  MonitorScript script_;
  std::atomic<bool>& approve_ = script_.approve;
  std::function<void(const rpc::monitor::MonitorClient::Callbacks&)> on_connect_;
  int connects_ ABSL_GUARDED_BY(mu_) = 0;
  // What connecting to the monitor fails with (OK: it connects).
  absl::Status connect_error_ ABSL_GUARDED_BY(mu_);
  EventLog events_;
  Metrics metrics_;
  absl::Mutex mu_;
  rpc::monitor::MonitorClient::Callbacks callbacks_ ABSL_GUARDED_BY(mu_);
  RecordingVm* vm_ = nullptr;
  core::Timings timings_;
  std::unique_ptr<Runner> runner_;
};

// A scheduler that takes a request and never answers it: the request fails after the configured
// timeout (schedulerRequestTimeout; before, the executor waited forever), the runner retries,
// and once the scheduler answers again the VM grows. The late answers are dropped.
TEST_F(RunnerTest, ASchedulerThatNeverAnswersTimesOutAndTheRunnerRecovers) {
  timings_.scheduler_request_timeout = absl::Milliseconds(50);
  timings_.scheduler_retry_failed_request = absl::Milliseconds(50);
  Start(8);
  ASSERT_TRUE(Eventually(
      [&] { return Reserved("vm1") == Cus(1) && HasEvent(api::v1::EVENT_KIND_PERMIT); }));
  scheduler_.SetSilent(true);
  SendMetrics(2.7, kGiB / 4);  // 3 CU
  ASSERT_GE(log_.Await("scheduler " + Cus(3).ToString() + " (unanswered)"), 0) << log_.Dump();
  ASSERT_TRUE(Eventually([&] {
    for (const Event& e : events_.Since(0)) {
      if (e.kind == api::v1::EVENT_KIND_SCHEDULER_REQUEST_FAILED &&
          absl::StrContains(e.text, "no answer within 50ms")) {
        return true;
      }
    }
    return false;
  })) << log_.Dump();
  EXPECT_EQ(vm_->Current()->memory_bytes, kGiB) << "no growth without a permit";

  scheduler_.SetSilent(false);
  ASSERT_GE(log_.Await("vm " + Cus(3).ToString()), 0) << log_.Dump();
  EXPECT_EQ(Reserved("vm1"), Cus(3));
  scheduler_.AnswerLate(absl::UnavailableError("late"));
  EXPECT_EQ(runner_->Status().permit, Cus(3)) << "a late answer changes nothing";
}

// A monitor link refused (the monitor is not the VM's, or it refused this agent's token) is
// counted at every attempt and logged, and said once in the event log while it lasts.
TEST_F(RunnerTest, ARefusedMonitorLinkIsCountedAtEveryAttempt) {
  {
    absl::MutexLock lock(&mu_);
    connect_error_ = absl::PermissionDeniedError(
        "monitor at in-test: its certificate names spiffe://t/vm/vm2, not spiffe://t/vm/vm1");
  }
  Start(8);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(metrics_.Render(),
                             "autoscaling_agent_monitor_refused_total{vm=\"vm1\"} 3");
  })) << metrics_.Render();
  EXPECT_EQ(Count(api::v1::EVENT_KIND_MONITOR_UNREACHABLE), 1);
  EXPECT_FALSE(HasEvent(api::v1::EVENT_KIND_MONITOR_CONNECTED));
}

TEST_F(RunnerTest, GrowsSchedulerVmMonitorAndShrinksMonitorVmScheduler) {
  Start(/*node_cus=*/8);
  SendMetrics(/*load=*/2.5, /*memory_bytes=*/kGiB / 4);  // CPU goal: 2.5 / 0.9 -> 3 CU
  const std::string big = Cus(3).ToString();
  const int asked = log_.Await("scheduler " + big);
  const int resized = log_.Await("vm " + big);
  const int told = log_.Await("monitor upscale " + big);
  ASSERT_GE(told, 0) << log_.Dump();
  EXPECT_LT(asked, resized) << log_.Dump();
  EXPECT_LT(resized, told) << log_.Dump();
  EXPECT_EQ(Reserved("vm1"), Cus(3));

  SendMetrics(/*load=*/0, /*memory_bytes=*/kGiB / 4);
  const std::string small = Cus(1).ToString();
  const int approved = log_.Await("monitor downscale " + small, told);
  const int shrunk = log_.Await("vm " + small, told);
  const int released = log_.Await("scheduler " + small, told);
  ASSERT_GE(released, 0) << log_.Dump();
  EXPECT_LT(approved, shrunk) << log_.Dump();
  EXPECT_LT(shrunk, released) << log_.Dump();
  EXPECT_TRUE(HasEvent(api::v1::EVENT_KIND_DOWNSCALE_APPROVED));
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (Reserved("vm1") != Cus(1) && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(Reserved("vm1"), Cus(1)) << "the node's reservation follows the shrink";
}

TEST_F(RunnerTest, APartialGrantGrowsTheVmOnlyToThePermit) {
  Start(/*node_cus=*/4);
  Place("vm2", {2, 2});  // the node has 1 CU left
  SendMetrics(/*load=*/2.5, /*memory_bytes=*/kGiB / 4);
  ASSERT_GE(log_.Await("vm " + Cus(2).ToString()), 0) << log_.Dump();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_FALSE(log_.Any("vm " + Cus(3).ToString())) << log_.Dump();
  EXPECT_TRUE(HasEvent(api::v1::EVENT_KIND_PARTIAL_GRANT));
  EXPECT_EQ(Reserved("vm1"), Cus(2));
  EXPECT_EQ(runner_->Status().current, Cus(2));
}

TEST_F(RunnerTest, NoGrowthWhileTheSchedulerIsDownThenGrowth) {
  scheduler_.down_ = true;
  Start(/*node_cus=*/8);
  SendMetrics(/*load=*/2.5, /*memory_bytes=*/kGiB / 4);
  // The first request (for what the VM has) fails and is retried after 3 s.
  const int first = log_.Await("scheduler " + Cus(1).ToString());
  ASSERT_GE(log_.Await("scheduler " + Cus(1).ToString(), first), 0) << log_.Dump();
  EXPECT_FALSE(log_.Any("vm ")) << "no resize without a permit:" << log_.Dump();
  EXPECT_TRUE(HasEvent(api::v1::EVENT_KIND_SCHEDULER_REQUEST_FAILED));
  scheduler_.down_ = false;
  EXPECT_GE(log_.Await("scheduler " + Cus(3).ToString()), 0) << log_.Dump();
  EXPECT_GE(log_.Await("vm " + Cus(3).ToString()), 0) << log_.Dump();
}

TEST_F(RunnerTest, ADeniedDownscaleKeepsTheSize) {
  Start(/*node_cus=*/8);
  SendMetrics(/*load=*/2.5, /*memory_bytes=*/kGiB / 4);
  ASSERT_GE(log_.Await("monitor upscale " + Cus(3).ToString()), 0) << log_.Dump();
  approve_ = false;
  SendMetrics(/*load=*/0, /*memory_bytes=*/kGiB / 4);
  // The monitor is asked one CU at a time.
  ASSERT_GE(log_.Await("monitor downscale " + Cus(2).ToString()), 0) << log_.Dump();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_FALSE(log_.Any("vm " + Cus(2).ToString())) << log_.Dump();
  EXPECT_FALSE(log_.Any("vm " + Cus(1).ToString())) << log_.Dump();
  EXPECT_TRUE(HasEvent(api::v1::EVENT_KIND_DOWNSCALE_DENIED));
  EXPECT_EQ(runner_->Status().current, Cus(3));
}

TEST_F(RunnerTest, WithoutAMonitorTheVmNeverShrinks) {
  Start(/*node_cus=*/8, /*with_monitor=*/false);
  runner_->Update({3, 4}, core::ScalingConfig(), core::Timings());
  ASSERT_GE(log_.Await("vm " + Cus(3).ToString()), 0) << log_.Dump();
  runner_->Update({1, 4}, core::ScalingConfig(), core::Timings());
  absl::SleepFor(absl::Seconds(2));
  EXPECT_FALSE(log_.Any("vm " + Cus(1).ToString())) << log_.Dump();
  EXPECT_FALSE(log_.Any("vm " + Cus(2).ToString())) << log_.Dump();
}

TEST_F(RunnerTest, NoResizeDuringAMigration) {
  Start(/*node_cus=*/8, /*with_monitor=*/false);
  ASSERT_TRUE(runner_->BeginMigration(absl::Seconds(1)).ok());
  runner_->Update({2, 4}, core::ScalingConfig(), core::Timings());
  absl::SleepFor(absl::Seconds(1.5));
  EXPECT_FALSE(log_.Any("vm ")) << log_.Dump();
  EXPECT_TRUE(runner_->Status().migrating);
  runner_->EndMigration();
  EXPECT_GE(log_.Await("vm " + Cus(2).ToString()), 0) << log_.Dump();
}

TEST_F(RunnerTest, AnUnreachableVmMarksTheRunnerFailed) {
  Start(/*node_cus=*/8, /*with_monitor=*/false);
  vm_->Fail(absl::UnavailableError("QMP connection closed"));
  runner_->Update({2, 4}, core::ScalingConfig(), core::Timings());
  ASSERT_GE(log_.Await("vm " + Cus(2).ToString()), 0) << log_.Dump();
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (runner_->failure().empty() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(absl::StrContains(runner_->failure(), "QMP connection closed")) << runner_->failure();
  EXPECT_TRUE(HasEvent(api::v1::EVENT_KIND_RESIZE_FAILED));
}

TEST_F(RunnerTest, AVmThatGoesAwayIsNoticedWithoutAResize) {
  Start(/*node_cus=*/8, /*with_monitor=*/false);
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (runner_->Status().observed != Cus(1) && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(runner_->Status().observed, Cus(1)) << "the VM reports its size";
  vm_->Fail(absl::UnavailableError("QMP connection closed"));
  while (runner_->failure().empty() && absl::Now() < end + absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(absl::StrContains(runner_->failure(), "QMP connection closed")) << runner_->failure();
  EXPECT_FALSE(runner_->Status().observed.has_value());
  EXPECT_FALSE(log_.Any("vm ")) << log_.Dump();
}

TEST_F(RunnerTest, MetricsThatAreNotFiniteAreRefused) {
  Start(/*node_cus=*/8);
  api::v1::Metrics nan;
  nan.set_load_avg_1m(std::nan(""));
  nan.set_load_avg_5m(1);
  nan.set_memory_usage_bytes(kGiB / 4);
  SendMetrics(nan);
  ASSERT_TRUE(Eventually([&] { return HasEvent(api::v1::EVENT_KIND_METRICS_REFUSED); }));
  EXPECT_FALSE(runner_->Status().metrics.has_value());
  // Fresh, valid metrics are taken.
  SendMetrics(/*load=*/2.5, /*memory_bytes=*/kGiB / 4);
  EXPECT_GE(log_.Await("vm " + Cus(3).ToString()), 0) << log_.Dump();
  ASSERT_TRUE(runner_->Status().metrics.has_value());
  EXPECT_EQ(runner_->Status().metrics->load_avg_1m(), 2.5);
}

// The monitor asks for memory the moment the agent connects (its usage is past the threshold
// already): the request is not lost to the connection being set up.
TEST_F(RunnerTest, AnUpscaleRequestThatComesWithTheConnectionIsKept) {
  on_connect_ = [](const rpc::monitor::MonitorClient::Callbacks& callbacks) {
    api::v1::UpscaleRequest r;
    r.set_usage_bytes(kGiB);
    r.set_threshold_bytes(kGiB / 2);
    callbacks.on_upscale_request(r);
  };
  Start(/*node_cus=*/8);
  EXPECT_GE(log_.Await("vm " + Cus(2).ToString()), 0) << log_.Dump();
  EXPECT_EQ(runner_->Status().upscale_requests, 1);
}

// A call in flight keeps the old monitor client alive past a reconnection; when the call ends
// and the client goes, the end of its stream must not end the new connection.
TEST_F(RunnerTest, AnOldMonitorClientEndingLateLeavesTheNewConnectionAlone) {
  Start(/*node_cus=*/8);
  SendMetrics(/*load=*/2.5, /*memory_bytes=*/kGiB / 4);
  ASSERT_GE(log_.Await("monitor upscale " + Cus(3).ToString()), 0) << log_.Dump();
  absl::Notification release;
  script_.hold_downscale = &release;
  SendMetrics(/*load=*/0, /*memory_bytes=*/kGiB / 4);
  ASSERT_GE(log_.Await("monitor downscale " + Cus(2).ToString()), 0) << log_.Dump();
  // The first stream ends while its downscale request is still out; the runner reconnects.
  rpc::monitor::MonitorClient::Callbacks first;
  {
    absl::MutexLock lock(&mu_);
    first = callbacks_;
  }
  first.on_closed(absl::UnavailableError("stream reset"));
  ASSERT_TRUE(Eventually([&] { return Connects() == 2; }));
  ASSERT_TRUE(Eventually([&] { return Count(api::v1::EVENT_KIND_MONITOR_CONNECTED) == 2; }));
  script_.hold_downscale = nullptr;
  release.Notify();  // the old call ends; the old client goes
  ASSERT_TRUE(Eventually([&] {
    return HasEvent(api::v1::EVENT_KIND_DOWNSCALE_APPROVED) ||
           HasEvent(api::v1::EVENT_KIND_DOWNSCALE_REQUEST_FAILED);
  }));
  // The new connection keeps answering health checks: it was not torn down.
  const int checks = script_.health_checks;
  ASSERT_TRUE(Eventually([&] { return script_.health_checks >= checks + 5; }));
  EXPECT_EQ(Count(api::v1::EVENT_KIND_MONITOR_DISCONNECTED), 1);
  EXPECT_EQ(Connects(), 2);
  EXPECT_TRUE(runner_->Status().monitor_connected);
}

}  // namespace
}  // namespace autoscale::agent
