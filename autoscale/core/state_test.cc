#include "autoscale/core/state.h"

#include <memory>
#include <vector>

#include "autoscale/base/units.h"
#include "gtest/gtest.h"

namespace autoscale::core {
namespace {

const Resources kCu{250, kGiB};

Resources Cu(int64_t n) { return kCu * n; }

// Load and memory for which the reference goal is exactly `cpu_cu` and `mem_cu`.
SystemMetrics Metrics(int cpu_cu, int mem_cu = 0) {
  return SystemMetrics{.load_avg_1m = cpu_cu * 0.25 * 0.9,
                       .load_avg_5m = cpu_cu * 0.25 * 0.9,
                       .memory_usage_bytes = mem_cu * 0.75 * kGiB};
}

class StateTest : public ::testing::Test {
 protected:
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);

  StateConfig Config(ScalingConfig scaling = {}) { return {kCu, scaling, Timings{}}; }

  // A state after start-up: the first scheduler request granted what the VM has, and the monitor
  // connected.
  State Started(Resources current, Bounds bounds = {1, 8}, ScalingConfig scaling = {}) {
    State s(Config(scaling), current, bounds);
    ActionSet a = s.NextActions(now_);
    EXPECT_TRUE(a.scheduler_request.has_value());
    EXPECT_FALSE(a.scheduler_request->last_permit.has_value()) << "first request has no permit";
    EXPECT_EQ(a.scheduler_request->target, current) << "first request asks for what the VM has";
    s.SchedulerRequestStarted(now_, a.scheduler_request->target);
    EXPECT_TRUE(s.SchedulerRequestSucceeded(now_, current).ok());
    s.MonitorConnected(now_);
    return s;
  }

  void GrantScheduler(State& s, Resources permit) {
    ActionSet a = s.NextActions(now_);
    ASSERT_TRUE(a.scheduler_request.has_value());
    s.SchedulerRequestStarted(now_, a.scheduler_request->target);
    ASSERT_TRUE(s.SchedulerRequestSucceeded(now_, permit).ok());
  }

  void ResizeVm(State& s, Resources expected_target) {
    ActionSet a = s.NextActions(now_);
    ASSERT_TRUE(a.vm_resize.has_value());
    ASSERT_EQ(a.vm_resize->target, expected_target);
    s.VmResizeStarted(now_, a.vm_resize->target);
    s.VmResizeSucceeded(now_, a.vm_resize->target);
  }
};

TEST_F(StateTest, BasicScaleUpAndDown) {
  State s = Started(Cu(1));
  ActionSet idle = s.NextActions(now_);
  EXPECT_FALSE(idle.scheduler_request || idle.vm_resize || idle.monitor_upscale ||
               idle.monitor_downscale);
  EXPECT_EQ(idle.wait, absl::Seconds(15)) << "next periodic scheduler request";

  // Load for 2 CU: ask the scheduler first; the VM waits for the permit.
  s.UpdateSystemMetrics(now_, Metrics(2));
  ActionSet up = s.NextActions(now_);
  ASSERT_TRUE(up.scheduler_request.has_value());
  EXPECT_EQ(up.scheduler_request->target, Cu(2));
  EXPECT_EQ(up.scheduler_request->last_permit, Cu(1));
  EXPECT_TRUE(up.scheduler_request->metrics.has_value());
  EXPECT_FALSE(up.vm_resize.has_value());
  s.SchedulerRequestStarted(now_, Cu(2));
  EXPECT_FALSE(s.NextActions(now_).vm_resize.has_value()) << "permit not yet granted";
  ASSERT_TRUE(s.SchedulerRequestSucceeded(now_, Cu(2)).ok());

  // Then the VM, then the monitor.
  ActionSet grow = s.NextActions(now_);
  ASSERT_TRUE(grow.vm_resize.has_value());
  EXPECT_EQ(grow.vm_resize->current, Cu(1));
  EXPECT_EQ(grow.vm_resize->target, Cu(2));
  EXPECT_FALSE(grow.monitor_upscale.has_value()) << "the monitor hears only after the VM grew";
  s.VmResizeStarted(now_, Cu(2));
  s.VmResizeSucceeded(now_, Cu(2));
  ActionSet notify = s.NextActions(now_);
  ASSERT_TRUE(notify.monitor_upscale.has_value());
  EXPECT_EQ(notify.monitor_upscale->current, Cu(1));
  EXPECT_EQ(notify.monitor_upscale->target, Cu(2));
  EXPECT_FALSE(notify.scheduler_request.has_value());
  s.MonitorUpscaleStarted(now_, Cu(2));
  s.MonitorUpscaleSucceeded(now_);
  EXPECT_EQ(s.monitor_approved(), Cu(2));

  // Load drops: ask the monitor first; the VM waits for approval; the scheduler hears last.
  now_ += absl::Seconds(5);
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet down = s.NextActions(now_);
  ASSERT_TRUE(down.monitor_downscale.has_value());
  EXPECT_EQ(down.monitor_downscale->target, Cu(1));
  EXPECT_FALSE(down.vm_resize.has_value());
  EXPECT_FALSE(down.scheduler_request.has_value());
  s.MonitorDownscaleStarted(now_, Cu(1));
  s.MonitorDownscaleApproved(now_);
  ActionSet shrink = s.NextActions(now_);
  ASSERT_TRUE(shrink.vm_resize.has_value());
  EXPECT_EQ(shrink.vm_resize->target, Cu(1));
  EXPECT_FALSE(shrink.scheduler_request.has_value()) << "reported only after the VM shrank";
  s.VmResizeStarted(now_, Cu(1));
  s.VmResizeSucceeded(now_, Cu(1));
  ActionSet report = s.NextActions(now_);
  ASSERT_TRUE(report.scheduler_request.has_value());
  EXPECT_EQ(report.scheduler_request->target, Cu(1));
  EXPECT_EQ(report.scheduler_request->last_permit, Cu(2));
}

TEST_F(StateTest, PeriodicSchedulerRequest) {
  State s = Started(Cu(2));
  now_ += absl::Seconds(14);
  ActionSet early = s.NextActions(now_);
  EXPECT_FALSE(early.scheduler_request.has_value());
  EXPECT_EQ(early.wait, absl::Seconds(1));
  now_ += absl::Seconds(1);
  ActionSet due = s.NextActions(now_);
  ASSERT_TRUE(due.scheduler_request.has_value());
  EXPECT_EQ(due.scheduler_request->target, Cu(2)) << "nothing changed: report what the VM has";
  s.SchedulerRequestStarted(now_, Cu(2));
  EXPECT_FALSE(s.NextActions(now_).scheduler_request.has_value()) << "one request at a time";
  ASSERT_TRUE(s.SchedulerRequestSucceeded(now_, Cu(2)).ok());
  EXPECT_EQ(s.NextActions(now_).wait, absl::Seconds(15));
}

TEST_F(StateTest, PeriodicRequestIncludesResizeInFlight) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(3));
  GrantScheduler(s, Cu(3));
  ActionSet a = s.NextActions(now_);
  ASSERT_TRUE(a.vm_resize.has_value());
  s.VmResizeStarted(now_, Cu(3));
  now_ += absl::Seconds(15);
  ActionSet tick = s.NextActions(now_);
  ASSERT_TRUE(tick.scheduler_request.has_value());
  EXPECT_EQ(tick.scheduler_request->target, Cu(3)) << "the VM is already growing to 3 CU";
}

TEST_F(StateTest, PartialGrantThenRetry) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(4));
  // The node had room for 3 CU of CPU but only 2 CU of memory.
  Resources partial{Cu(3).milli_cpu, Cu(2).memory_bytes};
  GrantScheduler(s, partial);
  ActionSet a = s.NextActions(now_);
  ASSERT_TRUE(a.vm_resize.has_value());
  EXPECT_EQ(a.vm_resize->target, partial) << "apply what was granted";
  EXPECT_FALSE(a.scheduler_request.has_value());
  EXPECT_EQ(a.wait, absl::Seconds(2)) << "retry a partial grant after 2s";
  now_ += absl::Seconds(2);
  ActionSet retry = s.NextActions(now_);
  ASSERT_TRUE(retry.scheduler_request.has_value());
  EXPECT_EQ(retry.scheduler_request->target, Cu(4));
}

TEST_F(StateTest, DeniedDownscaleCooldown) {
  State s = Started(Cu(4));
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet a = s.NextActions(now_);
  ASSERT_TRUE(a.monitor_downscale.has_value());
  EXPECT_EQ(a.monitor_downscale->target, Cu(3)) << "at most one CU per monitor step";
  s.MonitorDownscaleStarted(now_, Cu(3));
  s.MonitorDownscaleDenied(now_);

  Desired d = s.DesiredResources(now_);
  EXPECT_EQ(d.resources, Cu(4)) << "stay above what was refused";
  EXPECT_EQ(d.decided_by, Signal::kDeniedDownscale);
  ActionSet cooling = s.NextActions(now_);
  EXPECT_FALSE(cooling.monitor_downscale.has_value());
  EXPECT_FALSE(cooling.vm_resize.has_value());
  EXPECT_EQ(cooling.wait, absl::Seconds(5));

  now_ += absl::Seconds(5);
  ActionSet again = s.NextActions(now_);
  ASSERT_TRUE(again.monitor_downscale.has_value());
  EXPECT_EQ(again.monitor_downscale->target, Cu(3));
}

TEST_F(StateTest, MonitorRequestedUpscaleHonouredForItsWindow) {
  State s = Started(Cu(2));
  s.UpdateSystemMetrics(now_, Metrics(1, 1));
  // Before the request the goal is 1 CU (the VM would shrink), with nothing timed in it.
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(1));
  EXPECT_FALSE(s.DesiredResources(now_).expires.has_value());
  s.MonitorUpscaleRequested(now_);
  Desired d = s.DesiredResources(now_);
  EXPECT_EQ(d.resources, Cu(3)) << "one CU above the 2 GiB the monitor had";
  EXPECT_EQ(d.decided_by, Signal::kMonitorUpscale);
  EXPECT_EQ(d.expires, absl::Seconds(10)) << "when the request's validity ends";
  ActionSet a = s.NextActions(now_);
  ASSERT_TRUE(a.scheduler_request.has_value());
  EXPECT_EQ(a.scheduler_request->target, Cu(3));
  now_ += absl::Seconds(9);
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(3));
  now_ += absl::Seconds(1);
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(1)) << "valid for 10s only";
}

TEST_F(StateTest, FailuresBackOff) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(2));
  ActionSet a = s.NextActions(now_);
  s.SchedulerRequestStarted(now_, a.scheduler_request->target);
  s.SchedulerRequestFailed(now_);
  ActionSet after = s.NextActions(now_);
  EXPECT_FALSE(after.scheduler_request.has_value());
  EXPECT_EQ(after.wait, absl::Seconds(3));
  now_ += absl::Seconds(3);
  GrantScheduler(s, Cu(2));

  ActionSet r = s.NextActions(now_);
  s.VmResizeStarted(now_, r.vm_resize->target);
  s.VmResizeFailed(now_);
  ActionSet vm_wait = s.NextActions(now_);
  EXPECT_FALSE(vm_wait.vm_resize.has_value());
  EXPECT_EQ(vm_wait.wait, absl::Seconds(5));
  now_ += absl::Seconds(5);
  ResizeVm(s, Cu(2));

  ActionSet m = s.NextActions(now_);
  s.MonitorUpscaleStarted(now_, m.monitor_upscale->target);
  s.MonitorUpscaleFailed(now_);
  ActionSet m_wait = s.NextActions(now_);
  EXPECT_FALSE(m_wait.monitor_upscale.has_value());
  EXPECT_EQ(m_wait.wait, absl::Seconds(3));
  now_ += absl::Seconds(3);
  EXPECT_TRUE(s.NextActions(now_).monitor_upscale.has_value());

  // A failed downscale request backs off 3s too.
  s.MonitorUpscaleStarted(now_, Cu(2));
  s.MonitorUpscaleSucceeded(now_);
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet d = s.NextActions(now_);
  s.MonitorDownscaleStarted(now_, d.monitor_downscale->target);
  s.MonitorDownscaleFailed(now_);
  ActionSet d_wait = s.NextActions(now_);
  EXPECT_FALSE(d_wait.monitor_downscale.has_value());
  EXPECT_EQ(d_wait.wait, absl::Seconds(3));
}

TEST_F(StateTest, AFailedFirstRequestIsRetriedAfterTheBackoffNotAtTheTick) {
  State s(Config(), Cu(1), {1, 8});
  s.MonitorConnected(now_);
  ActionSet a = s.NextActions(now_);
  s.SchedulerRequestStarted(now_, a.scheduler_request->target);
  s.SchedulerRequestFailed(now_);
  s.UpdateSystemMetrics(now_, Metrics(3));
  EXPECT_EQ(s.NextActions(now_).wait, absl::Seconds(3));
  now_ += absl::Seconds(3);
  ActionSet retry = s.NextActions(now_);
  ASSERT_TRUE(retry.scheduler_request.has_value()) << "retried 3 s after the failure";
  EXPECT_FALSE(retry.scheduler_request->last_permit.has_value());
  EXPECT_EQ(retry.scheduler_request->target, Cu(1)) << "still the first request: what the VM has";
  s.SchedulerRequestStarted(now_, Cu(1));
  ASSERT_TRUE(s.SchedulerRequestSucceeded(now_, Cu(1)).ok());
  GrantScheduler(s, Cu(3));
  ResizeVm(s, Cu(3));
}

TEST_F(StateTest, InvalidPermitsAreFailures) {
  State s = Started(Cu(2));
  s.UpdateSystemMetrics(now_, Metrics(4));
  const Resources bad[] = {Resources{0, kGiB}, Cu(5), Cu(1)};
  for (const Resources& permit : bad) {
    ActionSet a = s.NextActions(now_);
    ASSERT_TRUE(a.scheduler_request.has_value()) << permit.ToString();
    s.SchedulerRequestStarted(now_, a.scheduler_request->target);
    absl::Status st = s.SchedulerRequestSucceeded(now_, permit);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << permit.ToString();
    EXPECT_EQ(s.permit(), Cu(2)) << "the old permit stays";
    EXPECT_EQ(s.NextActions(now_).wait, absl::Seconds(3));
    now_ += absl::Seconds(3);
  }
}

TEST_F(StateTest, NoDownscaleOnMissingMetrics) {
  // No metrics at all after a restart.
  State s = Started(Cu(4));
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(4));
  EXPECT_FALSE(s.NextActions(now_).monitor_downscale.has_value());

  // System metrics but LFC enabled and its metrics missing: still no shrink.
  ScalingConfig lfc;
  lfc.enable_lfc_metrics = true;
  State t = Started(Cu(4), {1, 8}, lfc);
  t.UpdateSystemMetrics(now_, Metrics(1));
  Desired d = t.DesiredResources(now_);
  EXPECT_EQ(d.resources, Cu(4));
  EXPECT_EQ(d.decided_by, Signal::kCurrentUsage);
  // ... but growth is fine.
  t.UpdateSystemMetrics(now_, Metrics(6));
  EXPECT_EQ(t.DesiredResources(now_).resources, Cu(6));
  // Metrics lost again (the source disconnected): back to no shrink.
  t.UpdateLfcMetrics(now_, LfcMetrics{std::vector<double>(60, 1.0)});
  t.UpdateSystemMetrics(now_, Metrics(1));
  EXPECT_EQ(t.DesiredResources(now_).resources, Cu(1));
  t.ClearMetrics();
  EXPECT_EQ(t.DesiredResources(now_).resources, Cu(4));
}

TEST_F(StateTest, StatesShareAConfigUntilOneChangesIts) {
  ScalingConfig scaling;
  scaling.enable_lfc_metrics = true;
  auto shared = std::make_shared<const StateConfig>(Config(scaling));
  State a(shared, Cu(2), {1, 8});
  State b(shared, Cu(2), {1, 8});
  EXPECT_EQ(&a.config(), &b.config()) << "one copy for both";

  ScalingConfig off = scaling;
  off.enable_lfc_metrics = false;
  a.UpdateScalingConfig(off);
  EXPECT_FALSE(a.config().scaling.enable_lfc_metrics);
  EXPECT_TRUE(b.config().scaling.enable_lfc_metrics) << "the other state keeps the shared one";
  EXPECT_TRUE(shared->scaling.enable_lfc_metrics);

  // A state given its own config back (the argument is part of what it replaces): the last
  // owner of the old copy lets it go while the new one is made. If the update read its argument
  // after replacing the config, it would read freed memory: ASan (scripts/test runs this test
  // under it) reports that; a plain build most likely still finds the old bytes there.
  shared.reset();
  b.UpdateScalingConfig(b.config().scaling);
  EXPECT_TRUE(b.config().scaling.enable_lfc_metrics);
  b.UpdateLfcMetrics(now_, LfcMetrics{std::vector<double>(60, 1.0)});
  b.UpdateScalingConfig(b.config().scaling);
  b.UpdateTimings(b.config().timings);
  b.UpdateSystemMetrics(now_, Metrics(1));
  EXPECT_TRUE(b.goal().lfc_cu.has_value()) << "the LFC metrics were kept";
}

TEST_F(StateTest, StaleMetricsAllowGrowthButNoShrink) {
  State s = Started(Cu(4));
  s.UpdateSystemMetrics(now_, Metrics(6));
  s.MarkMetricsStale();  // the metrics source went away
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(6)) << "growth on the last metrics";
  s.UpdateSystemMetrics(now_, Metrics(1));
  s.MarkMetricsStale();
  Desired d = s.DesiredResources(now_);
  EXPECT_EQ(d.resources, Cu(4)) << "no shrink on stale metrics";
  EXPECT_EQ(d.decided_by, Signal::kCurrentUsage);
  s.UpdateSystemMetrics(now_, Metrics(1));
  EXPECT_FALSE(s.metrics_stale());
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(1)) << "fresh metrics again";
}

TEST_F(StateTest, NoResizeWhileMigrating) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(4));
  GrantScheduler(s, Cu(4));
  s.SetMigrating(true);
  ActionSet a = s.NextActions(now_);
  EXPECT_FALSE(a.vm_resize.has_value());
  EXPECT_EQ(s.DesiredResources(now_).decided_by, Signal::kMigrating);
  s.SetMigrating(false);
  EXPECT_TRUE(s.NextActions(now_).vm_resize.has_value());
}

TEST_F(StateTest, MonitorHearsAboutGrowthOneCuAtATime) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(4));
  GrantScheduler(s, Cu(4));
  ResizeVm(s, Cu(4));  // the VM grows in one step
  for (int64_t n = 2; n <= 4; ++n) {
    ActionSet a = s.NextActions(now_);
    ASSERT_TRUE(a.monitor_upscale.has_value());
    EXPECT_EQ(a.monitor_upscale->target, Cu(n));
    s.MonitorUpscaleStarted(now_, a.monitor_upscale->target);
    s.MonitorUpscaleSucceeded(now_);
  }
  EXPECT_FALSE(s.NextActions(now_).monitor_upscale.has_value());
}

TEST_F(StateTest, UpscaleNotificationTakesPriorityOverDownscale) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(3));
  GrantScheduler(s, Cu(3));
  ResizeVm(s, Cu(3));
  // The load drops before the monitor heard about the growth.
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet a = s.NextActions(now_);
  EXPECT_FALSE(a.monitor_downscale.has_value());
  EXPECT_FALSE(a.monitor_upscale.has_value()) << "desired is 1 CU: nothing to announce";
  // Desired 2 CU: announce 2 first, not a downscale.
  s.UpdateSystemMetrics(now_, Metrics(2));
  ActionSet b = s.NextActions(now_);
  ASSERT_TRUE(b.monitor_upscale.has_value());
  EXPECT_EQ(b.monitor_upscale->target, Cu(2));
  EXPECT_FALSE(b.monitor_downscale.has_value());
}

TEST_F(StateTest, SchedulerUnreachableLimitsGrowthNotShrinking) {
  State s = Started(Cu(2));
  s.UpdateSystemMetrics(now_, Metrics(6));
  ActionSet a = s.NextActions(now_);
  s.SchedulerRequestStarted(now_, a.scheduler_request->target);
  s.SchedulerRequestFailed(now_);
  EXPECT_FALSE(s.NextActions(now_).vm_resize.has_value()) << "no growth past the last permit";
  // Shrinking needs only the monitor.
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet d = s.NextActions(now_);
  ASSERT_TRUE(d.monitor_downscale.has_value());
  s.MonitorDownscaleStarted(now_, Cu(1));
  s.MonitorDownscaleApproved(now_);
  ResizeVm(s, Cu(1));
}

TEST_F(StateTest, MonitorUnreachableBlocksShrinkingNotGrowth) {
  State s = Started(Cu(3));
  s.MonitorDisconnected();
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet a = s.NextActions(now_);
  EXPECT_FALSE(a.monitor_downscale.has_value());
  EXPECT_FALSE(a.vm_resize.has_value()) << "no shrink without monitor approval";
  s.UpdateSystemMetrics(now_, Metrics(5));
  GrantScheduler(s, Cu(5));
  ResizeVm(s, Cu(5));
  EXPECT_FALSE(s.NextActions(now_).monitor_upscale.has_value()) << "nobody to tell";
  // When the monitor returns it starts from the VM's current size.
  s.MonitorConnected(now_);
  EXPECT_EQ(s.monitor_approved(), Cu(5));
}

TEST_F(StateTest, BoundsClampTheGoal) {
  State s = Started(Cu(2), {2, 3});
  s.UpdateSystemMetrics(now_, Metrics(8));
  Desired high = s.DesiredResources(now_);
  EXPECT_EQ(high.resources, Cu(3));
  EXPECT_EQ(high.decided_by, Signal::kMaxBound);
  EXPECT_EQ(high.goal_cu, 8u) << "the goal before bounds is kept";
  s.UpdateSystemMetrics(now_, Metrics(0));
  Desired low = s.DesiredResources(now_);
  EXPECT_EQ(low.resources, Cu(2));
  EXPECT_EQ(low.decided_by, Signal::kMinBound);
  // Lowering the maximum below the current size shrinks the VM (through the monitor).
  State t = Started(Cu(4), {1, 8});
  t.UpdateSystemMetrics(now_, Metrics(4));
  t.UpdateBounds({1, 2});
  EXPECT_EQ(t.DesiredResources(now_).resources, Cu(2));
  ASSERT_TRUE(t.NextActions(now_).monitor_downscale.has_value());
}

TEST_F(StateTest, StabilizationWindowHoldsTheHighestRecentGoal) {
  ScalingConfig c;
  c.downscale_stabilization_window = absl::Seconds(60);
  State s = Started(Cu(1), {1, 8}, c);
  s.UpdateSystemMetrics(now_, Metrics(4));
  now_ += absl::Seconds(10);
  s.UpdateSystemMetrics(now_, Metrics(2));
  now_ += absl::Seconds(10);
  s.UpdateSystemMetrics(now_, Metrics(1));
  Desired held = s.DesiredResources(now_);
  EXPECT_EQ(held.resources, Cu(4));
  EXPECT_EQ(held.decided_by, Signal::kStabilization);
  EXPECT_EQ(held.goal.goal_cu, 1u) << "the raw goal is still visible in the breakdown";
  EXPECT_EQ(s.goal().goal_cu, 1u);
  EXPECT_EQ(held.expires, absl::Seconds(40)) << "the 4-CU sample leaves the window then";
  EXPECT_LE(s.NextActions(now_).wait.value(), absl::Seconds(40)) << "wake when 4 CU expires";
  now_ += absl::Seconds(40);  // 60s after the 4-CU sample
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(2));
  now_ += absl::Seconds(10);
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(1));
  // Growth is never held back.
  s.UpdateSystemMetrics(now_, Metrics(6));
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(6));
}

TEST_F(StateTest, DesiredGenerationMovesOnlyWithWhatTheDesiredSizeReads) {
  State s = Started(Cu(2));
  s.UpdateSystemMetrics(now_, Metrics(2));
  uint64_t g = s.desired_generation();
  // Scheduler traffic and the same goal from new numbers change the state, not the desired size.
  now_ += absl::Seconds(15);  // the periodic request
  GrantScheduler(s, Cu(2));
  s.UpdateSystemMetrics(now_, SystemMetrics{.load_avg_1m = 0.46, .load_avg_5m = 0.46});
  EXPECT_EQ(s.goal().goal_cu, 2u);
  EXPECT_EQ(s.desired_generation(), g);
  const uint64_t generation = s.generation();
  // A new goal, a finished resize, a monitor's request: each moves it (and the generation).
  s.UpdateSystemMetrics(now_, Metrics(3));
  EXPECT_GT(s.desired_generation(), g);
  EXPECT_GT(s.generation(), generation);
  g = s.desired_generation();
  s.MonitorUpscaleRequested(now_);
  EXPECT_GT(s.desired_generation(), g);
  g = s.desired_generation();
  s.VmResizeStarted(now_, Cu(3));
  EXPECT_EQ(s.desired_generation(), g) << "a resize under way does not change the goal";
  s.VmResizeSucceeded(now_, Cu(3));
  EXPECT_GT(s.desired_generation(), g) << "the VM's size is an input";
}

TEST_F(StateTest, MaxDownscaleStep) {
  ScalingConfig c;
  c.max_downscale_step_cu = 2;
  State s = Started(Cu(7), {1, 8}, c);
  s.UpdateSystemMetrics(now_, Metrics(1));
  Desired d = s.DesiredResources(now_);
  EXPECT_EQ(d.resources, Cu(5));
  EXPECT_EQ(d.decided_by, Signal::kMaxDownscaleStep);
  s.UpdateSystemMetrics(now_, Metrics(8));
  EXPECT_EQ(s.DesiredResources(now_).resources, Cu(8)) << "growth is not limited";
}

TEST_F(StateTest, ActionIdsFollowTheGeneration) {
  State s = Started(Cu(1));
  ActionSet a = s.NextActions(now_);
  EXPECT_EQ(a.id, s.generation());
  EXPECT_EQ(s.NextActions(now_ + absl::Seconds(1)).id, a.id) << "no change, same id";
  s.UpdateSystemMetrics(now_, Metrics(2));
  ActionSet b = s.NextActions(now_);
  EXPECT_NE(b.id, a.id) << "advice computed before the change is stale";
  s.SchedulerRequestStarted(now_, b.scheduler_request->target);
  EXPECT_NE(s.generation(), b.id);
}

TEST_F(StateTest, LateRepliesAfterReconnectAreIgnored) {
  State s = Started(Cu(3));
  s.UpdateSystemMetrics(now_, Metrics(1));
  ActionSet a = s.NextActions(now_);
  s.MonitorDownscaleStarted(now_, a.monitor_downscale->target);
  s.MonitorDisconnected();
  s.MonitorDownscaleApproved(now_);  // a reply from the old connection
  EXPECT_FALSE(s.monitor_approved().has_value());
  s.MonitorConnected(now_);
  EXPECT_EQ(s.monitor_approved(), Cu(3));
  EXPECT_FALSE(s.SchedulerRequestSucceeded(now_, Cu(3)).ok()) << "no request in flight";
}

// Races the property test found in the reference's rules (each fixed here; see state.cc).

TEST_F(StateTest, RequestDuringGrowingResizeDoesNotLowerTheReservation) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(4));
  GrantScheduler(s, Cu(4));
  ActionSet a = s.NextActions(now_);
  s.VmResizeStarted(now_, a.vm_resize->target);  // growing to 4 CU
  s.UpdateSystemMetrics(now_, Metrics(2));       // the load drops meanwhile
  now_ += absl::Seconds(15);
  ActionSet tick = s.NextActions(now_);
  ASSERT_TRUE(tick.scheduler_request.has_value());
  EXPECT_EQ(tick.scheduler_request->target, Cu(4)) << "the VM is about to have 4 CU";
  s.SchedulerRequestStarted(now_, Cu(4));
  EXPECT_FALSE(s.SchedulerRequestSucceeded(now_, Cu(2)).ok())
      << "a permit below a resize in flight is refused";
}

TEST_F(StateTest, NoShrinkBelowAnUpscaleNotificationInFlight) {
  State s = Started(Cu(1));
  s.UpdateSystemMetrics(now_, Metrics(2));
  GrantScheduler(s, Cu(2));
  ResizeVm(s, Cu(2));
  ActionSet a = s.NextActions(now_);
  s.MonitorUpscaleStarted(now_, a.monitor_upscale->target);  // telling the monitor: 2 CU
  s.UpdateSystemMetrics(now_, Metrics(1));
  EXPECT_FALSE(s.NextActions(now_).vm_resize.has_value())
      << "the monitor may already use 2 CU: the VM must not shrink under it";
  s.MonitorUpscaleSucceeded(now_);
  EXPECT_EQ(s.monitor_approved(), Cu(2));
}

TEST_F(StateTest, NoUpscaleNotificationWhileTheVmShrinks) {
  State s = Started(Cu(3));
  s.UpdateSystemMetrics(now_, Metrics(2));
  ActionSet d = s.NextActions(now_);
  s.MonitorDownscaleStarted(now_, d.monitor_downscale->target);
  s.MonitorDownscaleApproved(now_);
  ActionSet r = s.NextActions(now_);
  s.VmResizeStarted(now_, r.vm_resize->target);  // shrinking to 2 CU
  s.UpdateSystemMetrics(now_, Metrics(3));       // and now the load is back
  EXPECT_FALSE(s.NextActions(now_).monitor_upscale.has_value())
      << "3 CU would be announced for a VM about to have 2";
  s.VmResizeSucceeded(now_, Cu(2));
}

TEST_F(StateTest, MonitorReconnectDuringShrinkStartsFromTheSmallerSize) {
  State s = Started(Cu(3));
  s.UpdateSystemMetrics(now_, Metrics(2));
  ActionSet d = s.NextActions(now_);
  s.MonitorDownscaleStarted(now_, d.monitor_downscale->target);
  s.MonitorDownscaleApproved(now_);
  ActionSet r = s.NextActions(now_);
  s.VmResizeStarted(now_, r.vm_resize->target);
  s.MonitorDisconnected();
  s.MonitorConnected(now_);
  EXPECT_EQ(s.monitor_approved(), Cu(2));
}

}  // namespace
}  // namespace autoscale::core
