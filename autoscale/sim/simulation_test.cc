#include "autoscale/sim/simulation.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/units.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/state.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::sim {
namespace {

using ::testing::HasSubstr;

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

Demand Cores(double cores, int64_t memory_mib) {
  return {static_cast<int64_t>(cores * 1000), memory_mib * kMiB};
}

// One VM that grows on CPU, then on memory faster than its metrics arrive (the monitor asks),
// then shrinks; on a node too small for its peak, with failures of every kind.
SimConfig ScenarioConfig() {
  SimConfig c;
  c.duration = absl::Minutes(20);
  c.step = absl::Seconds(1);
  c.metrics_interval = absl::Seconds(5);
  c.nodes = 1;
  c.node_capacity = {1500, 6 * kGiB};
  c.bounds = {1, 16};
  c.failures = {.scheduler = 0.05, .vm_resize = 0.05, .monitor = 0.05, .migration = 0};
  c.seed = 7;
  return c;
}

std::vector<SimVm> ScenarioVm() {
  std::vector<SimVm> vms;
  vms.push_back({"vm-0", std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
                             {absl::ZeroDuration(), Cores(0.2, 700)},
                             {absl::Minutes(1), Cores(1.6, 1500)},
                             {absl::Minutes(5), Cores(0.6, 5500)},
                             {absl::Minutes(9), Cores(0.6, 2500)},
                             {absl::Minutes(12), Cores(0.1, 600)}})});
  return vms;
}

bool IsAction(VmEvent::Kind k) {
  return k == VmEvent::Kind::kSchedulerRequest || k == VmEvent::Kind::kVmResize ||
         k == VmEvent::Kind::kMonitorUpscale || k == VmEvent::Kind::kMonitorDownscale;
}

std::string Describe(const VmEvent& e) {
  return absl::StrCat(absl::FormatTime(e.at), " ", VmEventKindName(e.kind), " ",
                      e.resources.ToString(), e.ok ? "" : " failed", e.denied ? " denied" : "");
}

// Replays the recorded inputs of one VM into a fresh core::State, driven the way the agent's
// runner drives it (core/executor.h: the loop advises, an executor starts the operation if the
// advice is still current, results go back through Finish; asked again after every change and
// when the wait passes), and checks that every operation it starts is the next action the
// simulator started, at the same time, with the same target. Returns the first difference, or ""
// if there is none.
std::string ReplayByHand(const SimConfig& config, core::Resources initial,
                         const std::vector<VmEvent>& events) {
  core::State s(core::StateConfig{config.compute_unit, config.scaling, config.timings}, initial,
                config.bounds);
  s.MonitorConnected(kManualClockEpoch);
  size_t next = 0;
  std::optional<absl::Time> wake;
  // The kind of the monitor request in flight.
  core::OperationKind monitor = core::OperationKind::kMonitorUpscale;

  // Runs the core at `now`; returns a difference or "".
  auto run = [&](absl::Time now) -> std::string {
    for (;;) {
      const core::Advice a = core::Advise(s, now);
      if (!a.operation) {
        wake = a.wait ? std::optional<absl::Time>(now + *a.wait) : std::nullopt;
        return "";
      }
      const core::Operation& op = *a.operation;
      if (next >= events.size()) return "the core starts an action the simulator did not";
      const VmEvent& e = events[next++];
      const std::string at = absl::StrCat(" (recorded: ", Describe(e), ")");
      if (e.at != now) return absl::StrCat("the core acts at ", absl::FormatTime(now), at);
      switch (op.kind) {
        case core::OperationKind::kSchedulerRequest:
          if (e.kind != VmEvent::Kind::kSchedulerRequest || e.resources != op.target ||
              e.last_permit != op.last_permit) {
            return absl::StrCat("the core asks the scheduler for ", op.target.ToString(), at);
          }
          break;
        case core::OperationKind::kVmResize:
          if (e.kind != VmEvent::Kind::kVmResize || e.resources != op.target) {
            return absl::StrCat("the core resizes the VM to ", op.target.ToString(), at);
          }
          break;
        case core::OperationKind::kMonitorUpscale:
          if (e.kind != VmEvent::Kind::kMonitorUpscale || e.resources != op.target) {
            return absl::StrCat("the core tells the monitor ", op.target.ToString(), at);
          }
          monitor = op.kind;
          break;
        case core::OperationKind::kMonitorDownscale:
          if (e.kind != VmEvent::Kind::kMonitorDownscale || e.resources != op.target) {
            return absl::StrCat("the core asks the monitor for ", op.target.ToString(), at);
          }
          monitor = op.kind;
          break;
      }
      if (!core::Start(s, now, op)) return absl::StrCat("fresh advice is stale", at);
    }
  };
  // Feeds a recorded result back; returns a difference or "".
  auto finish = [&](const VmEvent& e, core::OperationKind kind,
                    const core::OperationResult& result) -> std::string {
    absl::Status st = core::Finish(s, e.at, kind, result);
    return st.ok() ? "" : absl::StrCat("the core refuses ", Describe(e), ": ", st.message());
  };

  // A migration began or ended between steps: the agent asks the core at the VM's next step,
  // after that step's metrics.
  std::optional<absl::Time> pending;
  while (next < events.size()) {
    const VmEvent& e = events[next];
    const bool same_step_input =
        pending && e.at == *pending &&
        (e.kind == VmEvent::Kind::kMetrics || e.kind == VmEvent::Kind::kMigrationStarted ||
         e.kind == VmEvent::Kind::kMigrationEnded);
    if (pending && !same_step_input) {
      const absl::Time at = *pending;
      pending.reset();
      if (wake && *wake == at) wake.reset();
      if (std::string d = run(at); !d.empty()) return d;
      continue;
    }
    // Timers that fire before this event.
    while (wake && *wake < e.at) {
      const absl::Time at = *wake;
      wake.reset();
      if (std::string d = run(at); !d.empty()) return d;
    }
    if (IsAction(e.kind)) {
      // Started by a timer that fired at the same time.
      if (!wake || *wake != e.at) {
        return absl::StrCat("the simulator started an action no input or timer explains: ",
                            Describe(e));
      }
      wake.reset();
      if (std::string d = run(e.at); !d.empty()) return d;
      continue;
    }
    ++next;
    std::string refused;
    switch (e.kind) {
      case VmEvent::Kind::kMetrics:
        s.UpdateSystemMetrics(e.at, e.metrics);
        break;
      case VmEvent::Kind::kMonitorUpscaleRequest:
        s.MonitorUpscaleRequested(e.at);
        break;
      case VmEvent::Kind::kSchedulerReply:
        refused = finish(
            e, core::OperationKind::kSchedulerRequest,
            e.ok ? core::OperationResult::Permit(e.resources) : core::OperationResult::Failed());
        break;
      case VmEvent::Kind::kVmResizeDone:
        refused = finish(
            e, core::OperationKind::kVmResize,
            e.ok ? core::OperationResult::Resized(e.resources) : core::OperationResult::Failed());
        break;
      case VmEvent::Kind::kMonitorReply:
        refused = finish(e, monitor,
                         e.ok       ? core::OperationResult::Done()
                         : e.denied ? core::OperationResult::Denied()
                                    : core::OperationResult::Failed());
        break;
      case VmEvent::Kind::kMigrationStarted:
      case VmEvent::Kind::kMigrationEnded:
        s.SetMigrating(e.kind == VmEvent::Kind::kMigrationStarted);
        pending = e.at;
        continue;
      default:
        return absl::StrCat("unexpected ", Describe(e));
    }
    if (!refused.empty()) return refused;
    pending.reset();
    if (std::string d = run(e.at); !d.empty()) return d;
  }
  if (pending) {
    if (std::string d = run(*pending); !d.empty()) return d;
  }
  // Nothing the core wanted is missing at the end: a timer left fires after the run.
  if (wake && *wake < kManualClockEpoch + config.duration) {
    return absl::StrCat("the core wanted to act at ", absl::FormatTime(*wake),
                        " but the simulator recorded nothing");
  }
  return "";
}

TEST(SimulationTest, ReproducesTheCoresDecisionsForARecordedScenario) {
  std::vector<VmEvent> events;
  SimConfig config = ScenarioConfig();
  config.on_event = [&](const VmEvent& e) { events.push_back(e); };
  absl::StatusOr<std::unique_ptr<Simulation>> sim = Simulation::Create(config, ScenarioVm());
  ASSERT_TRUE(sim.ok()) << sim.status();
  const core::Resources initial = (*sim)->vm_state(0).current();
  ASSERT_TRUE((*sim)->Run().ok());
  Results r = (*sim)->TakeResults();
  const VmResult& vm = r.vms[0];

  // The scenario went through the interesting paths.
  std::map<VmEvent::Kind, int> kinds;
  for (const VmEvent& e : events) ++kinds[e.kind];
  EXPECT_GT(kinds[VmEvent::Kind::kMonitorUpscaleRequest], 0) << "memory rose between metrics";
  EXPECT_GT(kinds[VmEvent::Kind::kMonitorDownscale], 0);
  EXPECT_GT(vm.upscales, 0);
  EXPECT_GT(vm.downscales, 0);
  EXPECT_GT(vm.partial_grants + vm.denials, 0) << "the node is smaller than the peak";
  EXPECT_GT(vm.scheduler_failures + vm.resize_failures + vm.monitor_failures, 0);
  EXPECT_EQ(vm.invalid_permits, 0);
  EXPECT_FALSE(vm.reaction_times.empty());
  // At the peak the node's 1.5 vCPUs / 6 GiB bound the VM.
  EXPECT_EQ(vm.peak_size, core::Resources(1500, 6 * kGiB));
  EXPECT_EQ(vm.final_size, config.compute_unit * 1) << "back to one CU when idle";

  EXPECT_EQ(ReplayByHand(config, initial, events), "");
}

TEST(SimulationTest, ReplayCatchesAnActionTheCoreDidNotWant) {
  std::vector<VmEvent> events;
  SimConfig config = ScenarioConfig();
  config.duration = absl::Minutes(3);
  config.on_event = [&](const VmEvent& e) { events.push_back(e); };
  auto sim = Simulation::Create(config, ScenarioVm());
  ASSERT_TRUE(sim.ok());
  const core::Resources initial = (*sim)->vm_state(0).current();
  ASSERT_TRUE((*sim)->Run().ok());
  // Tamper with the first VM resize's target: the replay must notice.
  bool tampered = false;
  for (VmEvent& e : events) {
    if (e.kind == VmEvent::Kind::kVmResize) {
      e.resources = e.resources + config.compute_unit;
      tampered = true;
      break;
    }
  }
  ASSERT_TRUE(tampered);
  EXPECT_THAT(ReplayByHand(config, initial, events), HasSubstr("the core resizes the VM to"));
}

// A crowded fleet: bursts and spikes on small nodes, failures everywhere, two threads.
SimConfig CrowdedConfig() {
  SimConfig c;
  c.duration = absl::Hours(2);
  c.step = absl::Seconds(5);
  c.nodes = 4;
  c.node_capacity = {8000, 32 * kGiB};
  c.watermark = 0.8;
  c.failures = {.scheduler = 0.02, .vm_resize = 0.02, .monitor = 0.02, .migration = 0.1};
  c.threads = 2;
  c.seed = 3;
  return c;
}

std::vector<SimVm> MixVms(size_t n, uint64_t seed, const char* mix = "bursty:2,spike:2,ramp:1") {
  std::vector<SimVm> vms;
  for (auto& w : MakeWorkloads(*ParseWorkloadMix(mix), n, seed)) {
    vms.push_back({absl::StrCat("vm-", vms.size()), std::move(w)});
  }
  return vms;
}

TEST(SimulationTest, NoNodeEverHoldsMoreThanItsTotal) {
  SimConfig config = CrowdedConfig();
  config.check_invariants = true;  // the ledger's invariants and every node's sum, every step
  auto sim = Simulation::Create(config, MixVms(28, config.seed));
  ASSERT_TRUE(sim.ok()) << sim.status();
  ASSERT_TRUE((*sim)->Run().ok());
  EXPECT_TRUE((*sim)->ledger().CheckInvariants().ok());
  Summary s = Summarize((*sim)->TakeResults());
  // The run was under pressure, so the checks meant something.
  EXPECT_GT(s.partial_grants + s.denials, 0);
  EXPECT_GT(s.migrations, 0);
  EXPECT_GT(s.migration_failures + s.resize_failures + s.scheduler_failures, 0);
  EXPECT_GT(s.node_reserved_peak, 0.8);
  EXPECT_LE(s.node_reserved_peak, 1.0);
}

TEST(SimulationTest, ReproducesTheCoresDecisionsForEveryVmOfACrowdedFleet) {
  // Partial grants, denials, migrations and failures of every kind, on two threads.
  SimConfig config = CrowdedConfig();
  config.duration = absl::Hours(1);
  absl::Mutex mu;
  std::map<uint32_t, std::vector<VmEvent>> per_vm;
  config.on_event = [&](const VmEvent& e) {
    absl::MutexLock l(&mu);
    per_vm[e.vm].push_back(e);
  };
  auto sim = Simulation::Create(config, MixVms(28, config.seed));
  ASSERT_TRUE(sim.ok()) << sim.status();
  std::vector<core::Resources> initial;
  for (uint32_t v = 0; v < (*sim)->vm_count(); ++v)
    initial.push_back((*sim)->vm_state(v).current());
  ASSERT_TRUE((*sim)->Run().ok());
  int migrated = 0;
  for (const auto& [vm, events] : per_vm) {
    for (const VmEvent& e : events) migrated += e.kind == VmEvent::Kind::kMigrationEnded;
    EXPECT_EQ(ReplayByHand(config, initial[vm], events), "") << "VM " << vm;
  }
  EXPECT_GT(migrated, 0) << "the replay covered migrations";
}

struct Outcome {
  std::string csv;
  std::vector<NodeSample> nodes;
  std::vector<VmSeries> series;
  std::vector<std::string> events;
};

void RunOnce(int threads, uint64_t seed, Outcome* o) {
  SimConfig config = CrowdedConfig();
  config.threads = threads;
  config.seed = seed;
  config.duration = absl::Hours(1);
  config.series_vms = {0, 5};
  absl::Mutex mu;
  std::map<uint32_t, std::vector<std::string>> per_vm;  // events of one VM are ordered
  config.on_event = [&](const VmEvent& e) {
    absl::MutexLock l(&mu);
    per_vm[e.vm].push_back(Describe(e));
  };
  auto sim = Simulation::Create(config, MixVms(28, seed, "diurnal:2,bursty:2,spike:1,idle:1"));
  ASSERT_TRUE(sim.ok()) << sim.status();
  ASSERT_TRUE((*sim)->Run().ok());
  Results r = (*sim)->TakeResults();
  *o = {VmCsv(r), r.node_series, r.vm_series, {}};
  for (auto& [vm, list] : per_vm) o->events.insert(o->events.end(), list.begin(), list.end());
}

bool SameSeries(const Outcome& a, const Outcome& b) {
  if (a.nodes.size() != b.nodes.size() || a.series.size() != b.series.size()) return false;
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    if (a.nodes[i].time != b.nodes[i].time || a.nodes[i].reserved != b.nodes[i].reserved ||
        a.nodes[i].allocated != b.nodes[i].allocated || a.nodes[i].demand != b.nodes[i].demand) {
      return false;
    }
  }
  for (size_t i = 0; i < a.series.size(); ++i) {
    if (a.series[i].time != b.series[i].time || a.series[i].demand != b.series[i].demand ||
        a.series[i].allocated != b.series[i].allocated) {
      return false;
    }
  }
  return true;
}

TEST(SimulationTest, DeterministicForASeedWhateverTheThreads) {
  Outcome a, b, single, other;
  ASSERT_NO_FATAL_FAILURE(RunOnce(2, 11, &a));
  ASSERT_NO_FATAL_FAILURE(RunOnce(2, 11, &b));
  ASSERT_NO_FATAL_FAILURE(RunOnce(1, 11, &single));
  EXPECT_EQ(a.csv, b.csv);
  EXPECT_EQ(a.events, b.events);
  EXPECT_TRUE(SameSeries(a, b));
  EXPECT_EQ(a.csv, single.csv) << "one thread or two: the same run";
  EXPECT_EQ(a.events, single.events);
  EXPECT_TRUE(SameSeries(a, single));
  ASSERT_NO_FATAL_FAILURE(RunOnce(2, 12, &other));
  EXPECT_NE(a.csv, other.csv) << "another seed, another run";
}

TEST(SimulationTest, RunUntilThenRunIsOneRun) {
  SimConfig config = CrowdedConfig();
  config.duration = absl::Minutes(30);
  auto whole = Simulation::Create(config, MixVms(20, 5));
  ASSERT_TRUE(whole.ok());
  ASSERT_TRUE((*whole)->Run().ok());
  auto parts = Simulation::Create(config, MixVms(20, 5));
  ASSERT_TRUE(parts.ok());
  ASSERT_TRUE((*parts)->RunUntil(absl::Minutes(7) + absl::Seconds(2)).ok());
  EXPECT_EQ((*parts)->now(), absl::Minutes(7) + absl::Seconds(5)) << "rounded up to a step";
  ASSERT_TRUE((*parts)->Run().ok());
  EXPECT_EQ(VmCsv((*whole)->TakeResults()), VmCsv((*parts)->TakeResults()));
}

TEST(SimulationTest, AccountsForWhatTheVmHadAndNeeded) {
  // A VM whose demand never changes and fits its first size: no scaling, exact CU-hours.
  SimConfig config;
  config.duration = absl::Hours(2);
  config.nodes = 1;
  std::vector<SimVm> vms;
  vms.push_back({"steady", std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
                               {absl::ZeroDuration(), Cores(0.45, 1536)}})});
  auto sim = Simulation::Create(config, std::move(vms));
  ASSERT_TRUE(sim.ok());
  ASSERT_TRUE((*sim)->Run().ok());
  Results r = (*sim)->TakeResults();
  const VmResult& v = r.vms[0];
  // CPU 0.45 / 0.9 / 0.25 = 2 CU; memory 1.5 GiB / 0.75 = 2 CU.
  EXPECT_EQ(v.initial, config.compute_unit * 2);
  EXPECT_EQ(v.final_size, config.compute_unit * 2);
  EXPECT_EQ(v.upscales + v.downscales, 0);
  EXPECT_NEAR(v.cu_hours_allocated, 4.0, 1e-9);
  EXPECT_NEAR(v.cu_hours_demand, 2 * 1.8, 1e-9) << "max(0.45 / 0.25, 1.5 / 1) CU for 2 hours";
  EXPECT_EQ(v.static_peak_cu, 2u);
  EXPECT_EQ(v.under_provisioned, absl::ZeroDuration());
  // The agent asks the scheduler every 15 s.
  EXPECT_NEAR(static_cast<double>(v.scheduler_requests), 2 * 3600 / 15.0, 2);
  EXPECT_EQ(r.vm_steps, 2 * 3600 / 5);
}

TEST(SimulationTest, CountsUnderProvisionedTime) {
  // More CPU than the VM's largest size: under-provisioned for as long as the demand lasts.
  SimConfig config;
  config.duration = absl::Minutes(10);
  config.bounds = {1, 4};
  config.nodes = 1;
  std::vector<SimVm> vms;
  vms.push_back({"hungry", std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
                               {absl::ZeroDuration(), Cores(0.1, 512)},
                               {absl::Minutes(2), Cores(2.0, 512)},
                               {absl::Minutes(7), Cores(0.1, 512)}})});
  auto sim = Simulation::Create(config, std::move(vms));
  ASSERT_TRUE(sim.ok());
  ASSERT_TRUE((*sim)->Run().ok());
  const VmResult v = (*sim)->TakeResults().vms[0];
  EXPECT_EQ(v.peak_size, config.compute_unit * 4);
  EXPECT_EQ(v.cpu_short, absl::Minutes(5)) << "2 cores wanted, 1 at most";
  EXPECT_EQ(v.under_provisioned, absl::Minutes(5));
  EXPECT_EQ(v.memory_short, absl::ZeroDuration());
  EXPECT_EQ(v.static_peak_cu, 4u) << "the peak is beyond the bounds";
}

TEST(SimulationTest, AMigrationDelaysAGrowthWishWithoutAbandoningIt) {
  // Two VMs grow on one node past its watermark (slow resizes keep each wish open for seconds);
  // one is migrated while it wants to grow. Its demand only rises and nothing fails, so no wish
  // goes away unmet: the migration's time counts in a reaction time.
  SimConfig config;
  config.duration = absl::Minutes(10);
  config.step = absl::Seconds(1);
  config.nodes = 2;
  config.node_capacity = {4000, 16 * kGiB};
  config.watermark = 0.7;
  config.migration_check_interval = absl::Seconds(5);
  config.failures = {};
  config.latencies.migration_setup = absl::Seconds(20);
  config.latencies.per_vcpu = absl::Seconds(40);
  std::vector<absl::Time> migration;
  config.on_event = [&](const VmEvent& e) {
    if (e.kind == VmEvent::Kind::kMigrationStarted || e.kind == VmEvent::Kind::kMigrationEnded) {
      migration.push_back(e.at);
    }
  };
  std::vector<SimVm> vms;
  for (int i = 0; i < 3; ++i) {
    vms.push_back({absl::StrCat("vm-", i),
                   std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
                       {absl::ZeroDuration(), Cores(0.1, 512)},
                       {absl::Minutes(1), Cores(i == 2 ? 0.1 : 2.5, 512)}})});
  }
  auto sim = Simulation::Create(config, std::move(vms));
  ASSERT_TRUE(sim.ok()) << sim.status();
  ASSERT_TRUE((*sim)->Run().ok());
  const Results r = (*sim)->TakeResults();
  ASSERT_EQ(migration.size(), 2u) << "one migration, started and ended";
  const absl::Duration migrating = migration[1] - migration[0];
  absl::Duration longest;
  for (const VmResult& v : r.vms) {
    EXPECT_EQ(v.reactions_abandoned, 0) << v.name;
    for (absl::Duration d : v.reaction_times) longest = std::max(longest, d);
  }
  EXPECT_GE(longest, migrating) << "a wish open when the migration began waited it out";
}

TEST(SimulationTest, RejectsBadConfigsNamingTheField) {
  SimConfig c;
  c.duration = absl::Seconds(7);
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("duration"));
  c = SimConfig{};
  c.metrics_interval = absl::Seconds(3);
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("metrics_interval"));
  c = SimConfig{};
  c.failures.vm_resize = 1.5;
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("failures.vm_resize"));
  c = SimConfig{};
  c.watermark = 0;
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("watermark"));
  c = SimConfig{};
  c.scaling.memory_usage_fraction_target = 0;
  EXPECT_FALSE(ValidateSimConfig(c).ok());
  c = SimConfig{};
  c.monitor.samples_averaged = 100;
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("monitor.samples_averaged"));
  c = SimConfig{};
  c.scaling.enable_lfc_metrics = true;  // simulated VMs have LFC metrics
  EXPECT_TRUE(ValidateSimConfig(c).ok());
  c.lfc_metrics_interval = absl::Seconds(7);
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("lfc_metrics_interval"));
  c = SimConfig{};
  c.lfc_new_page_share = 1.5;
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("lfc_new_page_share"));
  c = SimConfig{};
  c.step = c.metrics_interval = absl::Seconds(10);  // late downscale checks would fail
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("monitor.max_sample_age (5s), got 10s"));
  c = SimConfig{};
  c.step = c.metrics_interval = absl::Seconds(5);
  c.duration = absl::Hours(24 * 3651);  // fewer than 10^9 steps, but more than 10 years
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("duration"));
  c = SimConfig{};
  c.node_capacity.memory_bytes = kMaxMemoryBytes + 1;
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("node_capacity"));
  c = SimConfig{};
  c.compute_unit.milli_cpu = kMaxMilliCpu;
  c.node_capacity.milli_cpu = kMaxMilliCpu;
  EXPECT_THAT(ValidateSimConfig(c).message(), HasSubstr("largest VM"));
  EXPECT_TRUE(ValidateSimConfig(SimConfig{}).ok());

  SimConfig ok;
  EXPECT_FALSE(Simulation::Create(ok, {}).ok()) << "no VMs";
  std::vector<SimVm> twice = MixVms(2, 1);
  twice[1].name = twice[0].name;
  EXPECT_THAT(Simulation::Create(ok, std::move(twice)).status().message(),
              HasSubstr("given twice"));
  SimConfig series_twice;
  series_twice.series_vms = {1, 0, 1};
  EXPECT_THAT(Simulation::Create(series_twice, MixVms(2, 1)).status().message(),
              HasSubstr("series_vms must be distinct VM indices, got 1 twice"));
}

TEST(SimulationTest, RunsAtTheLimits) {
  // The largest nodes and VMs, demand at the limits, a bandwidth of a byte per second (a copy
  // of decades), hour-long hotplugs, intervals longer than the run: no overflow (UBSan checks it
  // under --config=asan), and the run ends.
  for (absl::Duration interval : {absl::Seconds(5), absl::InfiniteDuration()}) {
    SimConfig config;
    config.duration = absl::Minutes(10);
    config.nodes = 2;
    config.node_capacity = {kMaxMilliCpu, kMaxMemoryBytes};
    config.compute_unit = {kMaxMilliCpu / 16, kMaxMemoryBytes / 16};
    // vm-0 grows too big to move; a small VM sharing its node moves to the other node, which
    // stays under its watermark with it (2 of its 16 CU).
    config.watermark = 0.2;
    config.latencies.migration_bytes_per_second = 1;
    config.latencies.per_vcpu = config.latencies.per_gib = absl::Hours(1);
    config.migration_check_interval = config.node_series_interval = interval;
    config.series_vms = {0};
    std::vector<SimVm> vms;
    for (int i = 0; i < 3; ++i) {
      const Demand small{kMaxMilliCpu / 64, kMaxMemoryBytes / 64};
      vms.push_back(
          {absl::StrCat("vm-", i),
           std::make_unique<Script>(std::vector<std::pair<absl::Duration, Demand>>{
               {absl::ZeroDuration(), small},
               {absl::Minutes(1), i == 0 ? Demand{kMaxMilliCpu, kMaxMemoryBytes} : small}})});
    }
    auto sim = Simulation::Create(config, std::move(vms));
    ASSERT_TRUE(sim.ok()) << sim.status();
    ASSERT_TRUE((*sim)->Run().ok());
    const Results r = (*sim)->TakeResults();
    EXPECT_EQ(r.duration, config.duration);
    EXPECT_EQ(r.vm_series[0].time.size(), 10u * 60 / 5);
    EXPECT_FALSE(r.node_series.empty());
    Summary s = Summarize(r);
    EXPECT_GT(s.under_provisioned, absl::ZeroDuration());
    if (interval == absl::Seconds(5)) {
      EXPECT_GT(s.migrating, absl::ZeroDuration()) << "a migration began and never ended";
      EXPECT_EQ(s.migrations, 0);
    }
  }
}

TEST(SimulationTest, TooSmallAFleetIsAnErrorNamingTheVm) {
  SimConfig config;
  config.nodes = 1;
  config.node_capacity = {1000, 4 * kGiB};
  auto sim = Simulation::Create(config, MixVms(50, 1));
  ASSERT_FALSE(sim.ok());
  EXPECT_EQ(sim.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(sim.status().message(), HasSubstr("placing VM"));
}

}  // namespace
}  // namespace autoscale::sim
