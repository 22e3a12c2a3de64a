#include "autoscale/core/executor.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::core {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

const Resources kCu{250, kGiB};
const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

Resources Cu(int64_t n) { return kCu * n; }

// Load and memory for which the reference goal is exactly `cpu_cu` (and `mem_cu`).
SystemMetrics Metrics(int cpu_cu, int mem_cu = 0) {
  return SystemMetrics{.load_avg_1m = cpu_cu * 0.25 * 0.9,
                       .load_avg_5m = cpu_cu * 0.25 * 0.9,
                       .memory_usage_bytes = mem_cu * 0.75 * kGiB};
}

// "2" for two compute units, else the resources.
std::string InCu(const Resources& r) {
  if (r.milli_cpu % kCu.milli_cpu == 0 && r.memory_bytes % kCu.memory_bytes == 0 &&
      r.milli_cpu / kCu.milli_cpu == r.memory_bytes / kCu.memory_bytes) {
    return absl::StrCat(r.milli_cpu / kCu.milli_cpu);
  }
  return r.ToString();
}

// "15s vm_resize 2->1": when (since the start), what, from and to (in CUs).
std::string Describe(absl::Time at, const Operation& op) {
  return absl::StrCat(absl::FormatDuration(at - kStart), " ", OperationKindName(op.kind), " ",
                      InCu(op.current), "->", InCu(op.target));
}

// One input of a case, at `at` seconds after the start.
struct Input {
  enum class Type { kMetrics, kUpscaleRequest, kResult };
  int at = 0;
  Type type = Type::kMetrics;
  int cpu_cu = 0;                                         // kMetrics
  OperationKind kind = OperationKind::kSchedulerRequest;  // kResult
  OperationResult result{};                               // kResult
};

Input MetricsAt(int at, int cpu_cu) { return {.at = at, .cpu_cu = cpu_cu}; }
Input UpscaleRequestAt(int at) { return {.at = at, .type = Input::Type::kUpscaleRequest}; }
Input ResultAt(int at, OperationKind kind, OperationResult result) {
  return {.at = at, .type = Input::Type::kResult, .kind = kind, .result = result};
}

constexpr OperationKind kScheduler = OperationKind::kSchedulerRequest;
constexpr OperationKind kVm = OperationKind::kVmResize;
constexpr OperationKind kUpscale = OperationKind::kMonitorUpscale;
constexpr OperationKind kDownscale = OperationKind::kMonitorDownscale;

struct Case {
  std::string name;
  int start_cu;
  std::vector<Input> inputs;
  // Every operation started, in order.
  std::vector<std::string> started;
};

// Drives a fresh State (at `start_cu`, bounds 1..8, default timings, the monitor connected, no
// permit yet) through the inputs as a single-threaded driver does: after every input, and when
// the wait it was given passes, it starts operations until there is nothing to start (with
// StartNext, or with StartAll).
std::vector<std::string> Drive(const Case& c, bool start_all = false) {
  State s(StateConfig{kCu, ScalingConfig{}, Timings{}}, Cu(c.start_cu), Bounds{1, 8});
  s.MonitorConnected(kStart);
  std::vector<std::string> started;
  std::optional<absl::Time> wake;
  auto run = [&](absl::Time now) {
    std::optional<absl::Duration> wait;
    if (start_all) {
      wait = StartAll(s, now, [&](const Operation& op) { started.push_back(Describe(now, op)); });
    } else {
      Advice a;
      for (a = StartNext(s, now); a.operation; a = StartNext(s, now)) {
        started.push_back(Describe(now, *a.operation));
      }
      wait = a.wait;
    }
    wake = wait ? std::optional<absl::Time>(now + *wait) : std::nullopt;
  };
  run(kStart);
  for (const Input& in : c.inputs) {
    const absl::Time at = kStart + absl::Seconds(in.at);
    while (wake && *wake <= at) run(*wake);
    switch (in.type) {
      case Input::Type::kMetrics:
        s.UpdateSystemMetrics(at, Metrics(in.cpu_cu));
        break;
      case Input::Type::kUpscaleRequest:
        s.MonitorUpscaleRequested(at);
        break;
      case Input::Type::kResult:
        EXPECT_TRUE(Finish(s, at, in.kind, in.result).ok()) << c.name << " at " << in.at << "s";
        break;
    }
    run(at);
  }
  return started;
}

TEST(ExecutorTest, StartsOperationsInTheCoresOrder) {
  const Case cases[] = {
      {
          .name = "grow: scheduler permit, then the VM, then the monitor",
          .start_cu = 1,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Permit(Cu(1))), MetricsAt(1, 2),
                     ResultAt(1, kScheduler, OperationResult::Permit(Cu(2))),
                     ResultAt(2, kVm, OperationResult::Resized(Cu(2))),
                     ResultAt(2, kUpscale, OperationResult::Done())},
          .started = {"0 scheduler_request 1->1", "1s scheduler_request 1->2", "1s vm_resize 1->2",
                      "2s monitor_upscale 1->2"},
      },
      {
          .name = "shrink: monitor approval, then the VM, then the report to the scheduler",
          .start_cu = 2,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Permit(Cu(2))), MetricsAt(1, 1),
                     ResultAt(2, kDownscale, OperationResult::Done()),
                     ResultAt(3, kVm, OperationResult::Resized(Cu(1)))},
          .started = {"0 scheduler_request 2->2", "1s monitor_downscale 2->1", "2s vm_resize 2->1",
                      "3s scheduler_request 2->1"},
      },
      {
          .name = "a failed scheduler request is retried after its wait",
          .start_cu = 1,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Failed()),
                     ResultAt(3, kScheduler, OperationResult::Permit(Cu(1))), MetricsAt(4, 1)},
          .started = {"0 scheduler_request 1->1", "3s scheduler_request 1->1"},
      },
      {
          .name = "a partial grant: the VM grows to the permit, the rest is asked again later",
          .start_cu = 1,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Permit(Cu(1))), MetricsAt(1, 4),
                     ResultAt(1, kScheduler, OperationResult::Permit(Cu(2))),
                     ResultAt(2, kVm, OperationResult::Resized(Cu(2))),
                     ResultAt(2, kUpscale, OperationResult::Done()),
                     ResultAt(4, kScheduler, OperationResult::Permit(Cu(2)))},
          .started = {"0 scheduler_request 1->1", "1s scheduler_request 1->4", "1s vm_resize 1->2",
                      "2s monitor_upscale 1->2", "3s scheduler_request 2->4"},
      },
      {
          .name = "a denied downscale is asked again once the denial expires",
          .start_cu = 2,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Permit(Cu(2))), MetricsAt(1, 1),
                     ResultAt(1, kDownscale, OperationResult::Denied()),
                     ResultAt(7, kDownscale, OperationResult::Done())},
          .started = {"0 scheduler_request 2->2", "1s monitor_downscale 2->1",
                      "6s monitor_downscale 2->1", "7s vm_resize 2->1"},
      },
      {
          .name = "a failed resize that moved part of the way is retried from there",
          .start_cu = 1,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Permit(Cu(1))), MetricsAt(1, 3),
                     ResultAt(1, kScheduler, OperationResult::Permit(Cu(3))),
                     ResultAt(2, kVm, OperationResult::Failed(Cu(2))),
                     ResultAt(2, kUpscale, OperationResult::Done()),
                     ResultAt(8, kVm, OperationResult::Resized(Cu(3)))},
          .started = {"0 scheduler_request 1->1", "1s scheduler_request 1->3", "1s vm_resize 1->3",
                      "2s monitor_upscale 1->2", "7s vm_resize 2->3", "8s monitor_upscale 2->3"},
      },
      {
          .name = "the monitor's upscale request asks the scheduler for one CU more",
          .start_cu = 1,
          .inputs = {ResultAt(0, kScheduler, OperationResult::Permit(Cu(1))), UpscaleRequestAt(1)},
          .started = {"0 scheduler_request 1->1", "1s scheduler_request 1->2"},
      },
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Drive(c), ElementsAreArray(c.started)) << c.name;
    EXPECT_THAT(Drive(c, /*start_all=*/true), ElementsAreArray(c.started)) << c.name;
  }
}

class ExecutorStateTest : public ::testing::Test {
 protected:
  // A VM of `cu` compute units whose first scheduler request was granted, with its monitor.
  State Started(int cu) {
    State s(StateConfig{kCu, ScalingConfig{}, Timings{}}, Cu(cu), Bounds{1, 8});
    s.MonitorConnected(now_);
    Advice a = StartNext(s, now_);
    EXPECT_TRUE(a.operation && a.operation->kind == kScheduler);
    EXPECT_TRUE(Finish(s, now_, kScheduler, OperationResult::Permit(Cu(cu))).ok());
    return s;
  }

  absl::Time now_ = kStart;
};

TEST_F(ExecutorStateTest, TheSchedulerRequestStartsBeforeAVmResizeAdvisedWithIt) {
  // A downscale approved by the monitor just when the periodic scheduler request is due: the
  // core advises both.
  State s = Started(2);
  s.UpdateSystemMetrics(now_, Metrics(1));
  ASSERT_EQ(StartNext(s, now_).operation->kind, kDownscale);
  now_ += absl::Seconds(15);
  ASSERT_TRUE(Finish(s, now_, kDownscale, OperationResult::Done()).ok());
  const ActionSet both = s.NextActions(now_);
  ASSERT_TRUE(both.scheduler_request && both.vm_resize);

  Advice first = Advise(s, now_);
  ASSERT_TRUE(first.operation.has_value());
  EXPECT_EQ(first.operation->kind, kScheduler);
  EXPECT_EQ(first.operation->generation, s.generation());
  EXPECT_EQ(first.operation->target, Cu(2)) << "the periodic request reports what the VM has";
  EXPECT_EQ(first.operation->last_permit, Cu(2));
  EXPECT_TRUE(first.operation->metrics.has_value());
  ASSERT_TRUE(Start(s, now_, *first.operation));
  EXPECT_EQ(s.scheduler_request_in_flight(), Cu(2));

  Advice second = Advise(s, now_);
  ASSERT_TRUE(second.operation.has_value());
  EXPECT_EQ(second.operation->kind, kVm) << "still wanted once the request is made";
  EXPECT_EQ(second.operation->current, Cu(2));
  EXPECT_EQ(second.operation->target, Cu(1));
}

TEST_F(ExecutorStateTest, StaleAdviceIsNotStarted) {
  State s = Started(1);
  s.UpdateSystemMetrics(now_, Metrics(3));
  const Advice a = Advise(s, now_);
  ASSERT_TRUE(a.operation.has_value());
  ASSERT_EQ(a.operation->kind, kScheduler);
  ASSERT_EQ(a.operation->target, Cu(3));

  // New metrics arrive before the executor takes the advice: it must not act on it.
  s.UpdateSystemMetrics(now_, Metrics(2));
  const uint64_t generation = s.generation();
  EXPECT_FALSE(Start(s, now_, *a.operation));
  EXPECT_EQ(s.generation(), generation) << "a stale start changes nothing";
  EXPECT_FALSE(s.scheduler_request_in_flight().has_value());

  // Fresh advice asks for what is wanted now; given to two executors, only one starts it.
  const Advice fresh = Advise(s, now_);
  ASSERT_TRUE(fresh.operation.has_value());
  EXPECT_EQ(fresh.operation->target, Cu(2));
  EXPECT_TRUE(Start(s, now_, *fresh.operation));
  EXPECT_FALSE(Start(s, now_, *fresh.operation));
  EXPECT_EQ(s.scheduler_request_in_flight(), Cu(2));
}

TEST_F(ExecutorStateTest, NothingToStartGivesTheWait) {
  State s = Started(1);
  const Advice a = StartNext(s, now_);
  EXPECT_FALSE(a.operation.has_value());
  EXPECT_EQ(a.wait, absl::Seconds(15)) << "the next periodic scheduler request";
}

TEST_F(ExecutorStateTest, TheFirstRequestMeasuresGrowthFromTheVmsSize) {
  State s(StateConfig{kCu, ScalingConfig{}, Timings{}}, Cu(2), Bounds{1, 8});
  const Advice a = Advise(s, now_);
  ASSERT_TRUE(a.operation.has_value());
  EXPECT_EQ(a.operation->kind, kScheduler);
  EXPECT_FALSE(a.operation->last_permit.has_value());
  EXPECT_EQ(a.operation->current, Cu(2)) << "no permit yet: what the VM has";
}

TEST_F(ExecutorStateTest, AnInvalidPermitIsAFailedRequest) {
  State s = Started(1);
  s.UpdateSystemMetrics(now_, Metrics(2));
  ASSERT_EQ(StartNext(s, now_).operation->target, Cu(2));
  absl::Status st = Finish(s, now_, kScheduler, OperationResult::Permit(Cu(3)));
  EXPECT_THAT(std::string(st.message()), HasSubstr("more than requested"));
  EXPECT_FALSE(s.scheduler_request_in_flight().has_value());
  EXPECT_EQ(s.permit(), Cu(1));
  const Advice retry = StartNext(s, now_);
  EXPECT_FALSE(retry.operation.has_value());
  EXPECT_EQ(retry.wait, absl::Seconds(3)) << "retried like a failed request";
}

TEST_F(ExecutorStateTest, AResultThatDoesNotFitTheOperationIsAFailure) {
  // A VM resize "denied": recorded as a failed resize (retried later), never left in flight.
  State s = Started(1);
  s.UpdateSystemMetrics(now_, Metrics(2));
  ASSERT_EQ(StartNext(s, now_).operation->kind, kScheduler);
  ASSERT_TRUE(Finish(s, now_, kScheduler, OperationResult::Permit(Cu(2))).ok());
  ASSERT_EQ(StartNext(s, now_).operation->kind, kVm);
  absl::Status st = Finish(s, now_, kVm, OperationResult::Denied());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("vm_resize"));
  EXPECT_FALSE(s.vm_resize_in_flight().has_value());
  EXPECT_EQ(s.current(), Cu(1));
  EXPECT_EQ(StartNext(s, now_).wait, absl::Seconds(5)) << "the resize retry";

  // A scheduler "success" without a permit.
  now_ += absl::Seconds(20);
  Advice tick = StartNext(s, now_);
  ASSERT_TRUE(tick.operation.has_value());
  ASSERT_EQ(tick.operation->kind, kScheduler);
  st = Finish(s, now_, kScheduler, OperationResult::Done());
  EXPECT_THAT(std::string(st.message()), HasSubstr("without resources"));
  EXPECT_FALSE(s.scheduler_request_in_flight().has_value());
  // The request may have been taken (only its answer was bad): the permit is the lower of what
  // it was and what was asked.
  EXPECT_EQ(s.permit(), Resources::Min(Cu(2), tick.operation->target));
}

TEST(ClassifyGrantTest, ComparesThePermitWithWhatWasAskedAndWhatWasThere) {
  struct {
    const char* name;
    int before, asked, permit;
    Grant want;
  } cases[] = {
      {"a decrease reported", 2, 1, 1, Grant::kNoGrowth},
      {"a periodic request", 2, 2, 2, Grant::kNoGrowth},
      {"all of it", 1, 3, 3, Grant::kFull},
      {"part of it", 1, 3, 2, Grant::kPartial},
      {"none of it", 1, 3, 1, Grant::kDenied},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(GrantName(ClassifyGrant(Cu(c.before), Cu(c.asked), Cu(c.permit))),
              std::string(GrantName(c.want)))
        << c.name;
  }
  // CPU granted, memory not: still more than before.
  EXPECT_EQ(ClassifyGrant(Cu(1), Cu(2), {Cu(2).milli_cpu, Cu(1).memory_bytes}), Grant::kPartial);
}

}  // namespace
}  // namespace autoscale::core
