// Random sequences of metrics, replies, failures and clock steps, with the safety rules checked
// after every step. Seeded, so a failure replays exactly (the seed is in the failure message).
#include <random>

#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "autoscale/core/state.h"
#include "gtest/gtest.h"

namespace autoscale::core {
namespace {

const Resources kCu{250, kGiB};

class Simulation {
 public:
  explicit Simulation(uint64_t seed) : rng_(seed) {
    ScalingConfig scaling;
    scaling.enable_lfc_metrics = Chance(0.3);
    if (Chance(0.3)) scaling.downscale_stabilization_window = absl::Seconds(Uniform(1, 120));
    if (Chance(0.3)) scaling.max_downscale_step_cu = Uniform(1, 3);
    uint32_t min_cu = Uniform(1, 3);
    bounds_ = {min_cu, min_cu + static_cast<uint32_t>(Uniform(0, 8))};
    state_.emplace(StateConfig{kCu, scaling, Timings{}},
                   kCu * Uniform(bounds_.min_cu, bounds_.max_cu), bounds_);
  }

  // One random step; returns a description for failure messages.
  std::string Step() {
    switch (Uniform(0, 9)) {
      case 0:
        now_ += absl::Milliseconds(Uniform(0, 20000));
        return "advance clock";
      case 1: {
        SystemMetrics m{.load_avg_1m = Uniform(0, 40) / 10.0,
                        .load_avg_5m = Uniform(0, 40) / 10.0,
                        .memory_usage_bytes = Uniform(0, 12) * 0.5 * kGiB,
                        .memory_cached_bytes = Uniform(0, 8) * 0.5 * kGiB};
        const ActionSet before = state_->NextActions(now_);
        state_->UpdateSystemMetrics(now_, m);
        CheckSameAdvice(before, "system metrics");
        return "system metrics";
      }
      case 2: {
        std::vector<double> w;
        double v = 0;
        for (int i = 0; i < 60; ++i) w.push_back(v += Uniform(0, 5000));
        if (Chance(0.2)) w.resize(Uniform(0, 60));
        const ActionSet before = state_->NextActions(now_);
        state_->UpdateLfcMetrics(now_, LfcMetrics{w});
        CheckSameAdvice(before, "lfc metrics");
        return "lfc metrics";
      }
      case 3:
        if (Chance(0.1)) {
          state_->ClearMetrics();
          return "clear metrics";
        }
        if (Chance(0.1)) {
          state_->MarkMetricsStale();
          return "metrics stale";
        }
        if (Chance(0.2)) {
          state_->SetMigrating(!state_->migrating());
          return "toggle migrating";
        }
        if (Chance(0.3)) {
          if (state_->monitor_approved()) {
            state_->MonitorDisconnected();
            return "monitor disconnected";
          }
          state_->MonitorConnected(now_);
          return "monitor connected";
        }
        state_->MonitorUpscaleRequested(now_);
        return "monitor asks for upscale";
      default:
        return Execute();
    }
  }

  // The rules NextActions must keep, checked against the current state.
  void CheckInvariants(const std::string& context) {
    const State& s = *state_;
    ActionSet a = s.NextActions(now_);
    const Resources current = s.current();
    SCOPED_TRACE(context);
    if (s.permit()) {
      EXPECT_TRUE(current.FitsIn(*s.permit()))
          << "VM " << current.ToString() << " above its permit " << s.permit()->ToString();
    }
    // The monitor never believes the VM has more than it has (it would grow the LFC into
    // memory that is not there).
    if (s.monitor_approved()) {
      EXPECT_TRUE(s.monitor_approved()->FitsIn(current))
          << "monitor approved " << s.monitor_approved()->ToString() << " but the VM has "
          << current.ToString();
    }
    // The scheduler's books must cover the VM, also while it grows.
    if (reserved_) {
      EXPECT_TRUE(current.FitsIn(*reserved_))
          << "VM " << current.ToString() << " above its reservation " << reserved_->ToString();
      if (auto r = s.vm_resize_in_flight()) {
        EXPECT_TRUE(r->FitsIn(Resources::Max(*reserved_, current)))
            << "resize to " << r->ToString() << " above the reservation " << reserved_->ToString();
      }
    }
    if (a.vm_resize) {
      const Resources t = a.vm_resize->target;
      EXPECT_FALSE(s.migrating()) << "resize while migrating";
      EXPECT_FALSE(s.vm_resize_in_flight()) << "two resizes at once";
      // Growth only within the permit; shrinking only down to what the monitor approved.
      Resources permit = s.permit().value_or(current);
      Resources approved = s.monitor_approved().value_or(current);
      EXPECT_FALSE(t.AnyGreaterThan(Resources::Max(current, permit)))
          << "resize to " << t.ToString() << " above permit " << permit.ToString();
      EXPECT_FALSE(t.AnyLessThan(Resources::Min(current, approved)))
          << "resize to " << t.ToString() << " below approved " << approved.ToString();
      if (!s.DesiredResources(now_).goal.has_all_metrics) {
        Resources floor = Resources::Min(current, kCu * s.bounds().max_cu);
        EXPECT_FALSE(t.AnyLessThan(floor)) << "shrink on missing metrics";
      }
    }
    if (a.scheduler_request) {
      EXPECT_FALSE(s.scheduler_request_in_flight()) << "two scheduler requests at once";
      EXPECT_TRUE(current.FitsIn(a.scheduler_request->target))
          << "a decrease reported before the VM shrank";
    }
    if (a.monitor_upscale || a.monitor_downscale) {
      EXPECT_FALSE(s.monitor_request_in_flight()) << "two monitor requests at once";
      EXPECT_FALSE(a.monitor_upscale && a.monitor_downscale);
      ASSERT_TRUE(s.monitor_approved().has_value());
    }
    if (a.monitor_upscale) {
      EXPECT_TRUE(a.monitor_upscale->target.FitsIn(*s.monitor_approved() + kCu))
          << "monitor upscale step above one CU";
      EXPECT_TRUE(a.monitor_upscale->target.FitsIn(current)) << "announced before the VM grew";
    }
    if (a.monitor_downscale) {
      EXPECT_FALSE(a.monitor_downscale->target.AnyLessThan(
          Resources::SaturatingSub(*s.monitor_approved(), kCu)))
          << "monitor downscale step above one CU";
    }
    if (a.wait) {
      EXPECT_GT(*a.wait, absl::ZeroDuration());
    }

    // While desired_generation holds, so does the desired size, until Desired::expires passes.
    const Desired d = s.DesiredResources(now_);
    EXPECT_TRUE(s.generation() != last_generation_ ||
                s.desired_generation() == last_desired_generation_)
        << "desired_generation changed without generation";
    last_generation_ = s.generation();
    last_desired_generation_ = s.desired_generation();
    if (held_ && held_->generation == s.desired_generation() &&
        (!held_->desired.expires || now_ < held_->at + *held_->desired.expires)) {
      EXPECT_EQ(d.resources, held_->desired.resources) << "desired size changed unannounced";
      EXPECT_EQ(d.goal_cu, held_->desired.goal_cu);
      EXPECT_EQ(d.decided_by, held_->desired.decided_by);
    } else {
      held_ = Held{s.desired_generation(), now_, d};
    }
  }

 private:
  // Metrics that leave desired_generation alone change no advice but the metrics a scheduler
  // request carries (a driver that skips asking on such metrics, as the simulator does, starts
  // the same operations at the same times).
  void CheckSameAdvice(const ActionSet& before, const char* what, bool always = false) {
    if (!always && state_->desired_generation() != last_desired_generation_) return;
    const ActionSet a = state_->NextActions(now_);
    SCOPED_TRACE(what);
    EXPECT_EQ(a.wait, before.wait);
    EXPECT_EQ(a.scheduler_request.has_value(), before.scheduler_request.has_value());
    if (a.scheduler_request && before.scheduler_request) {
      EXPECT_EQ(a.scheduler_request->target, before.scheduler_request->target);
      EXPECT_EQ(a.scheduler_request->last_permit, before.scheduler_request->last_permit);
    }
    auto same = [](const auto& x, const auto& y) {
      return x.has_value() == y.has_value() &&
             (!x || (x->current == y->current && x->target == y->target));
    };
    EXPECT_TRUE(same(a.vm_resize, before.vm_resize));
    EXPECT_TRUE(same(a.monitor_upscale, before.monitor_upscale));
    EXPECT_TRUE(same(a.monitor_downscale, before.monitor_downscale));
  }

  // Starts the advised actions, or finishes requests in flight, at random: like the agent's
  // executors with peers that succeed, fail, deny and grant partly.
  std::string Execute() {
    State& s = *state_;
    ActionSet a = s.NextActions(now_);
    if (auto r = s.scheduler_request_in_flight(); r && Chance(0.5)) {
      if (Chance(0.2)) {
        s.SchedulerRequestFailed(now_);
        return "scheduler failed";
      }
      if (Chance(0.05)) {  // a broken scheduler: its permit must be refused
        (void)s.SchedulerRequestSucceeded(now_, *r + kCu);
        return "scheduler replied too much";
      }
      // Like the ledger: a decrease applies at once; an increase is granted from the old
      // reservation up to what was asked, per resource, in whole CUs.
      Resources reserved = reserved_.value_or(*r);
      reserved_ = Resources{GrantField(reserved.milli_cpu, r->milli_cpu, kCu.milli_cpu),
                            GrantField(reserved.memory_bytes, r->memory_bytes, kCu.memory_bytes)};
      (void)s.SchedulerRequestSucceeded(now_, *reserved_);
      return "scheduler replied " + reserved_->ToString();
    }
    if (auto r = s.vm_resize_in_flight(); r && Chance(0.5)) {
      if (Chance(0.2)) {
        // Part of the way, or nowhere.
        Resources at = s.current();
        if (Chance(0.5)) at.memory_bytes = (s.current().memory_bytes + r->memory_bytes) / 2;
        s.VmResizeFailed(now_, at);
        return "resize failed";
      }
      // Sometimes memory does not all come or go: the VM stops between old and target.
      Resources reached = *r;
      if (Chance(0.2)) reached.memory_bytes = (s.current().memory_bytes + r->memory_bytes) / 2;
      s.VmResizeSucceeded(now_, reached);
      return "resized to " + reached.ToString();
    }
    if (s.monitor_request_in_flight() && Chance(0.5)) {
      switch (Uniform(0, 3)) {
        case 0:
          s.MonitorUpscaleSucceeded(now_);
          s.MonitorDownscaleApproved(now_);
          return "monitor ok";
        case 1:
          s.MonitorDownscaleDenied(now_);
          s.MonitorUpscaleSucceeded(now_);
          return "monitor denied";
        default:
          s.MonitorUpscaleFailed(now_);
          s.MonitorDownscaleFailed(now_);
          return "monitor failed";
      }
    }
    if (a.scheduler_request && Chance(0.7)) {
      s.SchedulerRequestStarted(now_, a.scheduler_request->target);
      // The rest of the advice holds (executor.h's StartAll relies on it).
      ActionSet rest = a;
      rest.scheduler_request.reset();
      CheckSameAdvice(rest, "after starting a scheduler request", /*always=*/true);
      return "start scheduler request";
    }
    if (a.vm_resize && Chance(0.7)) {
      s.VmResizeStarted(now_, a.vm_resize->target);
      return "start resize";
    }
    if (a.monitor_upscale && Chance(0.7)) {
      s.MonitorUpscaleStarted(now_, a.monitor_upscale->target);
      return "start monitor upscale";
    }
    if (a.monitor_downscale && Chance(0.7)) {
      s.MonitorDownscaleStarted(now_, a.monitor_downscale->target);
      return "start monitor downscale";
    }
    if (a.wait && Chance(0.5)) {
      now_ += *a.wait;
      return "sleep as advised";
    }
    return "nothing";
  }

  int64_t GrantField(int64_t reserved, int64_t asked, int64_t unit) {
    if (asked <= reserved) return asked;
    int64_t parts = (asked - reserved) / unit;
    return reserved + unit * Uniform(0, parts);
  }

  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  std::mt19937_64 rng_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  Bounds bounds_;
  std::optional<State> state_;
  // What the simulated scheduler has reserved for the VM.
  std::optional<Resources> reserved_;
  // The desired size as of a time and a desired_generation.
  struct Held {
    uint64_t generation;
    absl::Time at;
    Desired desired;
  };
  std::optional<Held> held_;
  uint64_t last_generation_ = 0;
  uint64_t last_desired_generation_ = 0;
};

TEST(StateProperty, SafetyRulesHoldAfterEveryStep) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    Simulation sim(seed);
    for (int step = 0; step < 2000; ++step) {
      std::string what = sim.Step();
      sim.CheckInvariants(absl::StrCat("seed ", seed, " step ", step, ": ", what));
      if (::testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace autoscale::core
