// The cache goal in simulation: the LFC working-set windows the simulated VMs report are what the
// real lfc::WorkingSetEstimator counts on the same page stream, and with enableLFCMetrics the
// working set scales a VM's memory (and the report says so).
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "autoscale/core/goal.h"
#include "autoscale/sim/internal/working_set_model.h"
#include "autoscale/sim/report.h"
#include "autoscale/sim/simulation.h"
#include "autoscale/sim/workload.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lfc/working_set_estimator.h"

namespace autoscale::sim {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kPage = 8192;

// A scripted demand: piecewise constant, (from, demand) in time order.
class Script final : public Workload {
 public:
  explicit Script(std::vector<std::pair<absl::Duration, Demand>> steps)
      : steps_(std::move(steps)) {}
  Demand At(absl::Duration t) override {
    Demand d = steps_.front().second;
    for (const auto& [from, demand] : steps_) {
      if (t >= from) d = demand;
    }
    return d;
  }
  std::string kind() const override { return "script"; }

 private:
  std::vector<std::pair<absl::Duration, Demand>> steps_;
};

// The estimator's error bound for `n` distinct pages: 4 standard errors (about one estimate in
// 16,000 falls outside), and a few pages for small counts.
double Bound(const lfc::WorkingSetEstimator& e, double n) { return 4 * e.StandardError() * n + 3; }

// The page stream of internal/working_set_model.h, written out here on its own: in minute m,
// `hot` pages 0..hot-1 and `fresh` pages never used before, all at the minute's start.
struct PageStream {
  double new_share;
  uint64_t next_fresh = uint64_t{1} << 50;

  void Minute(lfc::WorkingSetEstimator& e, absl::Time start, int64_t pages) {
    const int64_t fresh = std::llround(static_cast<double>(pages) * new_share);
    for (int64_t p = 0; p < pages - fresh; ++p) e.Add(static_cast<uint64_t>(p), start);
    for (int64_t p = 0; p < fresh; ++p) e.Add(next_fresh++, start);
  }
};

TEST(WorkingSetModelTest, WindowsAreWhatTheEstimatorCountsOnTheSamePages) {
  std::mt19937_64 rng(5);
  const absl::Time start = absl::FromUnixSeconds(1'700'000'000);
  WorkingSetModel model(/*new_share=*/0.1);
  lfc::WorkingSetEstimator estimator;
  PageStream stream{0.1};
  std::vector<double> windows;
  int checked = 0;
  for (int64_t m = 0; m < 90; ++m) {
    // Hot sets that grow, shrink and jump, and a quiet minute now and then.
    const int64_t pages =
        m % 17 == 16 ? 0 : 20000 + static_cast<int64_t>(rng() % 60000) + (m > 45 ? 80000 : 0);
    model.Touch(m, pages);
    stream.Minute(estimator, start + absl::Minutes(m), pages);
    if (m % 7 != 3) continue;
    // Asked later in the minute: windows of i+1 minutes hold minutes m-i..m.
    model.Windows(m, &windows);
    const std::vector<double> estimated =
        estimator.MinuteWindows(start + absl::Minutes(m) + absl::Seconds(37));
    ASSERT_EQ(windows.size(), estimated.size());
    for (size_t i = 0; i < windows.size(); ++i) {
      EXPECT_NEAR(estimated[i], windows[i], Bound(estimator, windows[i]))
          << "minute " << m << ", window of " << i + 1 << " min";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 13 * 60);
}

TEST(LfcSimulationTest, TheAgentsGetTheWindowsTheEstimatorCounts) {
  // One VM whose working set (in MiB per minute) changes every few minutes.
  const std::vector<std::pair<int, int64_t>> minutes = {{0, 300},   {4, 1200}, {9, 500},
                                                        {13, 2000}, {21, 100}, {26, 900}};
  std::vector<std::pair<absl::Duration, Demand>> script;
  for (const auto& [m, mib] : minutes) {
    script.push_back(
        {absl::Minutes(m),
         Demand{.milli_cpu = 300, .memory_bytes = kGiB, .lfc_working_set_bytes = mib * kMiB}});
  }
  SimConfig config;
  config.duration = absl::Minutes(40);
  config.nodes = 1;
  config.scaling.enable_lfc_metrics = true;
  config.lfc_new_page_share = 0.2;
  std::vector<std::pair<absl::Time, std::vector<double>>> got;
  config.on_event = [&](const VmEvent& e) {
    if (e.kind == VmEvent::Kind::kLfcMetrics) got.emplace_back(e.at, e.lfc.working_set_pages);
  };
  std::vector<SimVm> vms;
  vms.push_back({"db", std::make_unique<Script>(script)});
  auto sim = Simulation::Create(config, std::move(vms));
  ASSERT_TRUE(sim.ok()) << sim.status();
  ASSERT_TRUE((*sim)->Run().ok());
  ASSERT_EQ(got.size(), 40u * 60 / 15) << "every 15 s";

  // The same pages into the real estimator, minute by minute, asked when the agent was.
  lfc::WorkingSetEstimator estimator;
  PageStream stream{0.2};
  Script demand(script);
  int64_t fed = -1;
  for (const auto& [at, windows] : got) {
    const int64_t minute = (at - kManualClockEpoch) / absl::Minutes(1);
    for (; fed < minute; ++fed) {
      const absl::Duration t = absl::Minutes(fed + 1);
      stream.Minute(estimator, kManualClockEpoch + t, demand.At(t).lfc_working_set_bytes / kPage);
    }
    const std::vector<double> estimated = estimator.MinuteWindows(at);
    ASSERT_EQ(windows.size(), 60u);
    for (size_t i = 0; i < windows.size(); ++i) {
      ASSERT_NEAR(estimated[i], windows[i], Bound(estimator, windows[i]))
          << "at " << absl::FormatTime(at) << ", window of " << i + 1 << " min";
    }
  }
}

// A VM that uses little CPU and memory but reads a large data set.
std::unique_ptr<Workload> Reader(int64_t working_set_gib) {
  return std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
      {absl::ZeroDuration(), Demand{.milli_cpu = 200,
                                    .memory_bytes = kGiB,
                                    .lfc_working_set_bytes = working_set_gib * kGiB}}});
}

TEST(LfcSimulationTest, TheWorkingSetScalesMemoryWhenTheLfcGoalIsOn) {
  for (bool lfc : {false, true}) {
    SCOPED_TRACE(lfc ? "LFC on" : "LFC off");
    SimConfig config;
    config.duration = absl::Minutes(30);
    config.nodes = 1;
    config.series_vms = {0};
    config.scaling.enable_lfc_metrics = lfc;
    config.lfc_new_page_share = 0;  // the same 6 GiB every minute: every window holds 6 GiB
    std::vector<SimVm> vms;
    vms.push_back({"reader", Reader(6)});
    auto sim = Simulation::Create(config, std::move(vms));
    ASSERT_TRUE(sim.ok()) << sim.status();
    ASSERT_TRUE((*sim)->Run().ok());
    const Results r = (*sim)->TakeResults();
    const VmResult& v = r.vms[0];
    if (lfc) {
      // 6 GiB of pages / lfcToMemoryRatio 0.75 = 8 CU of memory (after the 5-minute wait).
      EXPECT_EQ(v.final_size.memory_bytes, 8 * kGiB);
      EXPECT_GT(v.goal_by_lfc, v.metrics / 2);
      ASSERT_FALSE(r.vm_series[0].lfc_cu.empty());
      EXPECT_NEAR(r.vm_series[0].lfc_cu.back(), 8, 1e-9);
      const Summary s = Summarize(r);
      EXPECT_THAT(FormatSummaries({{"lfc", s}}), HasSubstr("LFC"));
      const std::string html = HtmlReport({{.label = "lfc", .results = &r}});
      EXPECT_THAT(html, HasSubstr("LFC part"));
    } else {
      EXPECT_LE(v.final_size.memory_bytes, 2 * kGiB) << "its memory goal: 1 GiB / 0.75";
      EXPECT_EQ(v.goal_by_lfc, 0);
      EXPECT_TRUE(std::isnan(r.vm_series[0].lfc_cu.back()));
    }
  }
}

TEST(LfcSimulationTest, NoDownscaleBeforeTheFirstWindows) {
  // With the LFC goal on, the core does not shrink a VM until it has LFC metrics. VMs placed at
  // 4 CU with little to do keep them until their first windows come: VM 1's at 55 s (fetches
  // every 60 s, spread over the VMs), then shrinks.
  SimConfig config;
  config.duration = absl::Minutes(2);
  config.nodes = 1;
  config.scaling.enable_lfc_metrics = true;
  config.lfc_metrics_interval = absl::Seconds(60);
  std::vector<absl::Time> downscales, windows;
  config.on_event = [&](const VmEvent& e) {
    if (e.vm != 1) return;
    if (e.kind == VmEvent::Kind::kMonitorDownscale) downscales.push_back(e.at);
    if (e.kind == VmEvent::Kind::kLfcMetrics) windows.push_back(e.at);
  };
  std::vector<SimVm> vms;
  for (int i = 0; i < 2; ++i) {
    vms.push_back({absl::StrCat("idle-", i),
                   std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
                       {absl::ZeroDuration(), Demand{.milli_cpu = 900, .memory_bytes = kGiB}},
                       {absl::Seconds(1), Demand{.milli_cpu = 10, .memory_bytes = kGiB / 2}}})});
  }
  auto sim = Simulation::Create(config, std::move(vms));
  ASSERT_TRUE(sim.ok()) << sim.status();
  EXPECT_EQ((*sim)->vm_state(1).current(), config.compute_unit * 4);
  ASSERT_TRUE((*sim)->Run().ok());
  ASSERT_FALSE(windows.empty());
  EXPECT_EQ(windows.front(), kManualClockEpoch + absl::Seconds(55));
  ASSERT_FALSE(downscales.empty());
  EXPECT_EQ(downscales.front(), windows.front()) << "no shrinking on partial metrics";
}

}  // namespace
}  // namespace autoscale::sim
