// The LFC goal end to end, as an operator runs it: the monitor reads the cache's working-set
// windows from the operator's file (what `monitor --lfc_windows_file` does) and sends them with
// its metrics over the agent link; the agent's core turns them into the LFC part of the goal; the
// scheduler grants it; the VM grows; and the monitor, told of the upscale, grows the Local File
// Cache of a real PostgreSQL 15. Everything is the production code but the VM (a fake from
// autoscale/testing, no QEMU) and /proc (a fixture, so the host's own load cannot decide the goal).
// Waits are bounded and poll for a condition; nothing asserts a time.
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "autoscale/agent/agent.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/rpc/monitor/in_process.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "autoscale/scheduler/scheduler.h"
#include "autoscale/testing/eventually.h"
#include "autoscale/testing/fake_vm.h"
#include "autoscale/testing/postgres_test_server.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "lfc/postgres_resizer.h"
#include "lfc/sizing.h"
#include "monitor/agent_link.h"
#include "monitor/metrics.h"
#include "monitor/monitor.h"

namespace autoscale::agent {
namespace {

using core::Resources;
using testing::Eventually;
using testing::PostgresTestServer;
using testing::QueryOne;

constexpr Resources kCu{1000, kGiB};
// Generous: the test starts PostgreSQL, and CI machines are busy.
constexpr absl::Duration kWait = absl::Seconds(60);

TEST(LfcEndToEnd, TheWorkingSetGrowsTheVmAndPostgresCache) {
  AUTOSCALE_REQUIRE_POSTGRES();
  // Vanilla PostgreSQL knows Neon's setting once postgresql.conf mentions it.
  absl::StatusOr<std::unique_ptr<PostgresTestServer>> pg = PostgresTestServer::Start(
      {.config_lines = {"neon.file_cache_size_limit = 0", "neon.max_file_cache_size = 16384"}});
  ASSERT_TRUE(pg.ok()) << pg.status();
  absl::StatusOr<std::unique_ptr<lfc::PostgresResizer>> resizer =
      lfc::PostgresResizer::Create({.conninfo = (*pg)->ConnInfo()});
  ASSERT_TRUE(resizer.ok()) << resizer.status();

  // The VM's /proc: idle, and little memory in use (the goal's CPU and memory parts stay at 1 CU).
  testing::TempDir dir("lfc-e2e");
  std::filesystem::create_directory(dir.path() + "/proc");
  std::ofstream(dir.path() + "/proc/loadavg") << "0.01 0.01 0.01 1/100 1\n";
  std::ofstream(dir.path() + "/proc/meminfo")
      << "MemTotal: 1000000 kB\nMemFree: 900000 kB\nMemAvailable: 900000 kB\nCached: 1000 kB\n";
  // The operator's source: a flat working set of exactly 3 CU of cache (the goal takes the cache
  // as lfc_to_memory_ratio, 0.75, of memory).
  const std::string windows_file = dir.path() + "/lfc-windows";
  const double pages = 3 * 0.75 * kGiB / core::kLfcPageBytes;
  std::ofstream(windows_file) << absl::StrJoin(std::vector<double>(60, pages), " ") << "\n";

  monitor::MetricsReader metrics(dir.path() + "/proc", monitor::LfcWindowsFromFile(windows_file));
  monitor::Monitor::Hooks hooks;
  hooks.read_stat = [] { return monitor::cgroup::MemoryStat{.anon_bytes = 100 * kMiB}; };
  monitor::Monitor vm_monitor({}, Clock::Real(), **resizer, std::move(hooks));
  ASSERT_TRUE(vm_monitor.Start(kGiB).ok());
  monitor::AgentLink link(vm_monitor, metrics, {.metrics_interval = absl::Milliseconds(20)});

  scheduler::SchedulerOptions scheduler_options;
  scheduler_options.default_compute_unit = kCu;
  auto opened =
      scheduler::Scheduler::Open(scheduler_options, std::make_unique<ledger::MemoryStore>());
  ASSERT_TRUE(opened.ok()) << opened.status();
  rpc::scheduler::InProcessClient scheduler((*opened)->service());
  api::v1::RegisterNodeRequest node;
  node.set_node("a");
  *node.mutable_total() = core::ToProto(kCu * 8);
  node.set_agent_address("a:agent");
  ASSERT_TRUE(scheduler.RegisterNode(node).ok());
  api::v1::PlaceVmRequest place;
  place.set_vm("vm1");
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(8);
  place.set_node("a");
  ASSERT_TRUE(scheduler.PlaceVm(place).ok());

  api::v1::AgentConfig config;
  config.set_node("a");
  *config.mutable_node_total() = core::ToProto(kCu * 8);
  config.set_scheduler_address("in-process");
  config.mutable_compute_unit()->set_milli_cpu(kCu.milli_cpu);
  config.mutable_compute_unit()->set_memory_bytes(kCu.memory_bytes);
  api::v1::VmConfig& vm = *config.add_vms();
  vm = testing::FakeVmConfig("vm1", {1, 8});
  vm.mutable_scaling()->set_enable_lfc_metrics(true);

  testing::FakeHypervisor hv;
  testing::FakeVm& fake = hv.AddVm("vm1", "fake:vm1", kCu, "running");
  testing::FakeVmDriverFactory vms(hv, "a");
  AgentOptions options;
  options.address = "a:agent";
  options.runner_max_sleep = absl::Milliseconds(20);
  options.monitor_retry = absl::Milliseconds(20);
  Agent agent(
      options, scheduler, vms,
      [&](const std::string& address, const rpc::monitor::AgentBinding& binding,
          rpc::monitor::MonitorClient::Callbacks callbacks,
          absl::Duration timeout) -> absl::StatusOr<std::unique_ptr<rpc::monitor::MonitorClient>> {
        if (address != vm.monitor_address())
          return absl::UnavailableError("no monitor at " + address);
        return rpc::monitor::InProcessConnector(link).Connect(address, binding,
                                                              std::move(callbacks), timeout);
      },
      [](const std::string& address, const std::string& /*node*/)
          -> absl::StatusOr<std::unique_ptr<rpc::agent_peer::MigrationPeer>> {
        return absl::UnavailableError("no peers in this test: " + address);
      });
  ASSERT_TRUE(agent.Start(config).ok());

  // The LFC part of the goal decides: 3 CU, granted, and the VM has them.
  std::optional<core::Desired> lfc_goal;
  ASSERT_TRUE(Eventually(
      [&] {
        for (const RunnerStatus& s : agent.Statuses()) {
          if (s.vm == "vm1" && s.desired.decided_by == core::Signal::kLfc) lfc_goal = s.desired;
        }
        return lfc_goal.has_value();
      },
      kWait))
      << agent.StatusJson(0);
  EXPECT_EQ(lfc_goal->goal_cu, 3u);
  EXPECT_TRUE(Eventually([&] { return fake.size() == kCu * 3; }, kWait)) << agent.StatusJson(0);

  // Told of the upscale, the monitor grew PostgreSQL's cache (in MB) from what 1 GiB of memory
  // gives to what 3 GiB give.
  const std::string want = std::to_string(lfc::CacheSizeBytes(3 * kGiB) / kMiB);
  ASSERT_NE(want, std::to_string(lfc::CacheSizeBytes(kGiB) / kMiB));
  std::string seen;
  EXPECT_TRUE(Eventually(
      [&] {
        seen = QueryOne((*pg)->ConnInfo(), "SHOW neon.file_cache_size_limit");
        return seen == want;
      },
      kWait))
      << "neon.file_cache_size_limit is " << seen << ", want " << want;
  agent.Stop();
}

}  // namespace
}  // namespace autoscale::agent
