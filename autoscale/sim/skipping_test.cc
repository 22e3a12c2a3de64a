// Skipping (simulation.h: metrics that change no decision wait for the VM's state) gives the same
// run as asking every VM's agent at every metrics arrival (SimConfig::step_every_vm), byte for
// byte: every per-VM figure, every series, the summary, and every input and action of every VM
// in order. On several seeds and workload mixes, with failures of every kind, migrations, the
// stabilization window, the LFC goal, metrics slower than the steps, and two threads; and the
// same run on 1, 2 and 4 threads.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/units.h"
#include "autoscale/core/state.h"
#include "autoscale/sim/report.h"
#include "autoscale/sim/simulation.h"
#include "autoscale/sim/workload.h"
#include "gtest/gtest.h"

namespace autoscale::sim {
namespace {

// Doubles in hexadecimal: exact.
std::string X(double v) { return absl::StrFormat("%a", v); }

std::string Describe(const VmEvent& e) {
  std::string out =
      absl::StrCat(absl::FormatTime(e.at), " ", VmEventKindName(e.kind), " ",
                   e.resources.ToString(), e.ok ? "" : " failed", e.denied ? " denied" : "");
  if (e.last_permit) absl::StrAppend(&out, " last ", e.last_permit->ToString());
  if (e.kind == VmEvent::Kind::kMetrics) {
    absl::StrAppend(&out, " ", X(e.metrics.load_avg_1m), " ", X(e.metrics.load_avg_5m), " ",
                    X(e.metrics.memory_usage_bytes), " ", X(e.metrics.memory_cached_bytes));
  }
  for (double w : e.lfc.working_set_pages) absl::StrAppend(&out, " ", X(w));
  return out;
}

struct Outcome {
  std::string text;     // everything the run produced
  int64_t asks = 0;     // times the agents asked their states (Results::agent_asks)
  int64_t metrics = 0;  // metrics the agents got
};

Outcome RunOnce(SimConfig config, const std::string& mix, size_t count, bool step_every_vm) {
  config.step_every_vm = step_every_vm;
  config.series_vms = {0, 1, static_cast<uint32_t>(count - 1)};
  absl::Mutex mu;
  std::map<uint32_t, std::vector<std::string>> events;  // a VM's events are in order
  config.on_event = [&](const VmEvent& e) {
    absl::MutexLock l(&mu);
    events[e.vm].push_back(Describe(e));
  };
  std::vector<SimVm> vms;
  absl::StatusOr<WorkloadMix> m = ParseWorkloadMix(mix);
  EXPECT_TRUE(m.ok()) << m.status();
  for (auto& w : MakeWorkloads(*m, count, config.seed)) {
    vms.push_back({absl::StrCat("vm-", vms.size()), std::move(w)});
  }
  auto sim = Simulation::Create(config, std::move(vms));
  EXPECT_TRUE(sim.ok()) << sim.status();
  if (!sim.ok()) return {};
  // In two parts: what waits at the end of a part reaches the states, and nothing changes.
  EXPECT_TRUE((*sim)->RunUntil(config.duration / 3).ok());
  EXPECT_TRUE((*sim)->Run().ok());
  Outcome o;
  const Results r = (*sim)->TakeResults();
  o.asks = r.agent_asks;
  for (const VmResult& v : r.vms) o.metrics += v.metrics;
  o.text = absl::StrCat(VmCsv(r), SeriesCsv(r), SummaryJson({{"run", Summarize(r)}}));
  for (const VmSeries& s : r.vm_series) {
    absl::StrAppend(&o.text, "series ", s.vm, "\n");
    for (size_t i = 0; i < s.time.size(); ++i) {
      absl::StrAppend(&o.text, absl::FormatDuration(s.time[i]), " ", s.demand[i].milli_cpu, " ",
                      s.demand[i].memory_bytes, " ", s.demand[i].lfc_working_set_bytes, " ",
                      s.allocated[i].ToString(), " ", X(s.goal_cu[i]), " ", X(s.cpu_cu[i]), " ",
                      X(s.memory_cu[i]), " ", X(s.lfc_cu[i]), "\n");
    }
  }
  for (const auto& [vm, list] : events) {
    absl::StrAppend(&o.text, "events ", vm, "\n", absl::StrJoin(list, "\n"), "\n");
  }
  return o;
}

// Where two long texts first differ, with some context.
std::string FirstDifference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  const size_t from = a.rfind('\n', i) == std::string::npos ? 0 : a.rfind('\n', i) + 1;
  return absl::StrCat("at byte ", i, ":\n  skipping: ", a.substr(from, 300),
                      "\n  every VM: ", b.substr(from, 300));
}

struct Case {
  std::string name;
  SimConfig config;
  std::string mix;
  size_t vms;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  // Small nodes under pressure: partial grants, denials, migrations, failures of every kind.
  SimConfig crowded;
  crowded.duration = absl::Hours(1);
  crowded.step = absl::Seconds(5);
  crowded.nodes = 4;
  crowded.node_capacity = {8000, 32 * kGiB};
  crowded.watermark = 0.8;
  crowded.failures = {.scheduler = 0.02, .vm_resize = 0.02, .monitor = 0.02, .migration = 0.1};
  crowded.threads = 2;
  cases.push_back({"crowded", crowded, "bursty:2,spike:2,ramp:1", 28});

  // The stabilization window and a downscale step limit (the goal's history and its timers), a
  // one-second step with metrics every 5 s.
  SimConfig stable = crowded;
  stable.step = absl::Seconds(1);
  stable.duration = absl::Minutes(40);
  stable.scaling.downscale_stabilization_window = absl::Minutes(3);
  stable.scaling.max_downscale_step_cu = 1;
  cases.push_back({"stabilization", stable, "diurnal:2,idle:1,spike:1", 24});

  // The LFC goal: windows every 15 s beside metrics every 5 s.
  SimConfig lfc = crowded;
  lfc.node_capacity = {16000, 96 * kGiB};
  lfc.scaling.enable_lfc_metrics = true;
  lfc.scaling.lfc_window_size_minutes = 3;
  lfc.scaling.lfc_min_wait_before_downscale_minutes = 3;
  cases.push_back({"lfc", lfc, "diurnal:1,bursty:1,idle:1", 24});

  // Metrics every 10 s at 5 s steps: the agents' timers fire between their metrics.
  SimConfig slow = crowded;
  slow.metrics_interval = absl::Seconds(10);
  slow.threads = 1;
  cases.push_back({"slow metrics", slow, "ramp:1,spike:1,diurnal:1", 20});

  // More nodes than threads, so that every thread steps several (and nodes a migration links
  // step one step at a time beside them).
  SimConfig fleet = crowded;
  fleet.nodes = 12;
  fleet.node_capacity = {12000, 48 * kGiB};
  fleet.node_series_interval = absl::Minutes(1);
  fleet.duration = absl::Minutes(30);
  cases.push_back({"fleet", fleet, "bursty:2,spike:1,diurnal:1,idle:1", 72});
  return cases;
}

TEST(SkippingTest, GivesTheSameRunAsAskingEveryVm) {
  for (const Case& c : Cases()) {
    for (uint64_t seed : {1, 2, 3}) {
      SCOPED_TRACE(absl::StrCat(c.name, ", seed ", seed));
      SimConfig config = c.config;
      config.seed = seed;
      const Outcome skipping = RunOnce(config, c.mix, c.vms, /*step_every_vm=*/false);
      const Outcome every = RunOnce(config, c.mix, c.vms, /*step_every_vm=*/true);
      ASSERT_FALSE(every.text.empty());
      EXPECT_TRUE(skipping.text == every.text) << FirstDifference(skipping.text, every.text);
      // And it did skip: at least a quarter of the metrics asked nothing.
      EXPECT_GT(every.asks - skipping.asks, every.metrics / 4)
          << skipping.asks << " asks against " << every.asks << ", " << every.metrics << " metrics";
    }
  }
}

// The nodes' steps run on a pool of threads (SimConfig::threads), the nodes split among them
// anew at every run of steps: 1, 2 and 4 threads give the same run, byte for byte, with
// skipping and with every VM asked.
TEST(SkippingTest, ThreadsGiveTheSameRun) {
  int compared = 0, ended = 0;
  for (const Case& c : Cases()) {
    for (uint64_t seed : {1, 2}) {
      for (bool step_every_vm : {false, true}) {
        if (step_every_vm && seed != 1) continue;
        SCOPED_TRACE(absl::StrCat(c.name, ", seed ", seed, step_every_vm ? ", every VM" : ""));
        SimConfig config = c.config;
        config.seed = seed;
        // Half an hour is enough for migrations to end in the middle of the nodes' runs.
        config.duration = std::min(config.duration, absl::Minutes(30));
        config.threads = 1;
        const Outcome one = RunOnce(config, c.mix, c.vms, step_every_vm);
        ASSERT_FALSE(one.text.empty());
        if (one.text.find("migration_ended") != std::string::npos) ++ended;
        for (int threads : {2, 4}) {
          config.threads = threads;
          const Outcome more = RunOnce(config, c.mix, c.vms, step_every_vm);
          EXPECT_TRUE(more.text == one.text)
              << threads << " threads: " << FirstDifference(more.text, one.text);
          EXPECT_EQ(more.asks, one.asks) << threads << " threads";
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 5 * 3 * 2);
  // Migrations ended, linking their nodes, in most of the runs.
  EXPECT_GT(ended, 5);
}

// Between migration checks each node runs its steps at once, except the nodes a migration that
// ends meanwhile links, which step one step at a time around its end. Checking the invariants at
// every step makes every run one step long: the two give the same run, byte for byte.
TEST(SkippingTest, NodesRunningSeveralStepsAtOnceGiveTheSameRun) {
  int ended = 0;
  for (const Case& c : Cases()) {
    if (c.name != "crowded" && c.name != "lfc") continue;
    for (uint64_t seed : {1, 2, 3}) {
      SCOPED_TRACE(absl::StrCat(c.name, ", seed ", seed));
      SimConfig config = c.config;
      config.seed = seed;
      // Node samples every minute: runs of up to 6 steps (a sample ends a run).
      config.node_series_interval = absl::Minutes(1);
      const Outcome runs = RunOnce(config, c.mix, c.vms, /*step_every_vm=*/false);
      config.check_invariants = true;
      const Outcome steps = RunOnce(config, c.mix, c.vms, /*step_every_vm=*/false);
      ASSERT_FALSE(steps.text.empty());
      EXPECT_TRUE(runs.text == steps.text) << FirstDifference(runs.text, steps.text);
      if (steps.text.find("migration_ended") != std::string::npos) ++ended;
    }
  }
  // Migrations ended during the nodes' runs.
  EXPECT_GT(ended, 0);
}

}  // namespace
}  // namespace autoscale::sim
