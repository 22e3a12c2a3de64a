// End to end, the story of a database compute: pgbench runs from a client namespace against the
// PostgreSQL guest on host A (its own address on a tap, testing::HostsNetwork); its load drives a
// CPU scale-up (vCPUs hot-plugged, the QEMU cgroup's quota raised); the larger VM puts node A
// above its watermark, and the agents live-migrate it to host B while pgbench runs; pgbench ends
// and the VM scales down on B. pgbench must finish with every client (it never reconnects: a
// broken connection aborts the client) and no failed transaction, the VM keep its address, and
// the ledger agree with the agents at the end.
//
// It prints what a client saw (the figures of bench/RESULTS.md): the guest's boot-to-ready, TPS
// before, during and after the scale-up and around the migration, and the longest gap between
// two transactions. The same lines go to figures.txt in the test's undeclared outputs.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "autoscale/testing/hosts_network.h"
#include "autoscale/testing/pgbench.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/host_cgroup.h"

namespace autoscale::demo {
namespace {

using ::autoscale::api::v1::AgentStatus;
using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::HostsNetwork;
using ::autoscale::testing::Pgbench;
using ::autoscale::testing::PgbenchOptions;
using ::autoscale::testing::PgbenchProgress;
using ::autoscale::testing::VmStatus;

constexpr int64_t kCu = 512 * kMiB;
constexpr char kVm[] = "pg";
constexpr char kAddress[] = "10.77.0.50";
// How long pgbench goes on after the migration.
constexpr absl::Duration kLoadOnB = absl::Seconds(8);

// The CPU quota of a VM's host cgroup in milli-CPU; -1 when it cannot be read.
int64_t QuotaMilli(const std::string& cgroup) {
  if (cgroup.empty()) return -1;
  auto opened = neonvm::launcher::HostCgroup::Open(cgroup);
  if (!opened.ok()) return -1;
  absl::StatusOr<int64_t> q = (*opened)->CpuQuota();
  return q.ok() && *q >= 0 ? *q * 1000 / neonvm::launcher::kCpuPeriodUs : -1;
}

// The mean TPS of the progress seconds ending in (from, to]; -1 when there are none.
double MeanTps(const std::vector<PgbenchProgress>& p, absl::Time from, absl::Time to) {
  double sum = 0;
  int n = 0;
  for (const PgbenchProgress& s : p) {
    if (s.time > from && s.time <= to) {
      sum += s.tps;
      ++n;
    }
  }
  return n == 0 ? -1 : sum / n;
}

absl::Time EventTime(const api::v1::AgentEvent& e) { return absl::FromUnixMillis(e.at_unix_ms()); }

TEST(EndToEnd, PgbenchRunsThroughScaleUpMigrationToAnotherHostAndScaleDown) {
  AUTOSCALE_REQUIRE(testing::ClusterMissing());
  AUTOSCALE_REQUIRE_POSTGRES_GUEST();
  AUTOSCALE_REQUIRE_HOSTS_NETWORK();
  AUTOSCALE_REQUIRE(testing::PgbenchMissing());
  auto net = HostsNetwork::Create();
  ASSERT_TRUE(net.ok()) << net.status();
  const std::string client_netns = "/run/netns/" + (*net)->client_netns();

  ClusterOptions options;
  options.bin = *testing::FindBinaries();
  options.hosts = net->get();
  // Node a (host A) migrates above 2 CU: the VM at 1 CU and a reserved 1-CU VM fit; the VM
  // scaled up to 2 CU does not, and it is the one that can leave. Node b (host B) has room.
  options.nodes = {{.name = "a", .total = {4000, 4 * kCu}, .watermark = 0.5},
                   {.name = "b", .total = {4000, 4 * kCu}}};
  auto cluster = Cluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  auto pg = c.AddGuest(
      {.name = kVm, .node = "a", .bounds = {1, 2}, .postgres = true, .address = kAddress});
  ASSERT_TRUE(pg.ok()) << pg.status();
  const absl::Duration boot = (*pg)->boot_time();
  // At most two QEMU processes: the guest and, during the move, its migration target.
  ASSERT_TRUE(
      c.Reserve({.name = "other", .node = "a", .bounds = {1, 1}, .migratable = false}).ok());
  auto ready = testing::AwaitStatus(c, "a", absl::Seconds(30), [](const AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, kVm);
    return vm != nullptr && vm->monitor_connected();
  });
  ASSERT_TRUE(ready.ok()) << ready.status() << "\nthe guest's boot and monitor logs:\n"
                          <<
      [&] {
        auto logs = (*pg)->Run("cat /var/log/boot.log; tail -n 20 /var/log/monitor.log");
        return logs.ok() ? *logs : logs.status().ToString();
      }();
  // The monitor found the VM's agent token (the launcher's, through fw_cfg) and admitted the
  // agent that presented it: the monitor link is bound to the VM's agent (issue 14).
  absl::StatusOr<std::string> monitor_log = (*pg)->MonitorLog();
  ASSERT_TRUE(monitor_log.ok()) << monitor_log.status();
  EXPECT_TRUE(absl::StrContains(*monitor_log, "admitting only the agent that holds the token"))
      << *monitor_log;
  const api::v1::VmStatus before = *VmStatus(*ready, kVm);
  EXPECT_EQ(before.current().milli_cpu(), 1000);
  const int64_t quota_before = QuotaMilli(before.host_cgroup());
  EXPECT_EQ(quota_before, 1000) << before.host_cgroup();

  testing::TempDir dir;
  PgbenchOptions bench_options{.host = kAddress, .netns = client_netns, .dir = dir.path()};
  // At most; it is ended (as -T would) once the VM has run under load on host B for a while.
  // How soon the load average calls for 2 CU depends on how busy this machine is (25 to 60 s).
  bench_options.duration = absl::Seconds(150);
  ASSERT_TRUE(testing::PgbenchInit(bench_options, absl::Seconds(60)).ok());
  auto bench = Pgbench::Start(bench_options);
  ASSERT_TRUE(bench.ok()) << bench.status();

  // Follow the agents while pgbench runs.
  std::optional<absl::Time> permit_up, scaled_up, migration_started, migrated;
  int64_t quota_up = -1;
  std::string up_cgroup, migration_text;
  while ((*bench)->Running()) {
    absl::StatusOr<AgentStatus> a = c.AgentStatus("a");
    if (a.ok()) {
      const api::v1::VmStatus* vm = VmStatus(*a, kVm);
      if (!permit_up && vm != nullptr && vm->permit().milli_cpu() >= 2000) {
        // The scheduler's grant that did it: the last one the agent logged.
        std::vector<api::v1::AgentEvent> permits =
            testing::Events(*a, kVm, api::v1::EVENT_KIND_PERMIT);
        permit_up = permits.empty() ? absl::Now() : EventTime(permits.back());
      }
      if (!scaled_up && vm != nullptr && vm->current().milli_cpu() >= 2000) {
        scaled_up = absl::Now();
        quota_up = QuotaMilli(vm->host_cgroup());
        up_cgroup = vm->host_cgroup();
      }
      for (const api::v1::AgentEvent& e :
           testing::Events(*a, kVm, api::v1::EVENT_KIND_MIGRATION_STARTED)) {
        if (!migration_started) migration_started = EventTime(e);
      }
      for (const api::v1::AgentEvent& e :
           testing::Events(*a, kVm, api::v1::EVENT_KIND_MIGRATED_OUT)) {
        if (!migrated) {
          migrated = EventTime(e);
          migration_text = e.text();
        }
      }
    }
    if (migrated && absl::Now() > *migrated + kLoadOnB) (*bench)->Finish();
    absl::SleepFor(absl::Milliseconds(250));
  }
  auto result = (*bench)->Wait(absl::Seconds(10));
  ASSERT_TRUE(result.ok()) << result.status();
  const absl::Time bench_end = absl::Now();

  // Every client ran to the end on its first connection, and no transaction failed.
  EXPECT_EQ(result->exit_code, 0) << result->output;
  EXPECT_EQ(result->aborted_clients, 0) << result->output;
  EXPECT_EQ(result->failed, 0) << result->output;
  EXPECT_GT(result->transactions, 0) << result->output;
  ASSERT_FALSE(result->ends.empty());

  // The scale-up and the migration, both while pgbench ran: the grant of 2 CU put node a above
  // its watermark, so the migration follows it at once, while the agent hot-plugs the vCPU.
  ASSERT_TRUE(permit_up.has_value()) << "no 2-CU permit on node a while pgbench ran";
  ASSERT_TRUE(scaled_up.has_value()) << "no scale-up to 2 CU on node a while pgbench ran";
  EXPECT_EQ(quota_up, 2000) << "the QEMU cgroup's quota after the scale-up: " << up_cgroup;
  ASSERT_TRUE(migration_started.has_value()) << "no migration while pgbench ran";
  ASSERT_TRUE(migrated.has_value()) << "the migration did not end while pgbench ran";
  EXPECT_GT(*permit_up, (*bench)->started());
  EXPECT_LE(*permit_up, *migration_started);
  EXPECT_LT(*migrated, result->ends.back()) << "transactions after the migration";

  // The guest on host B has the hot-plugged vCPU online, and its QEMU the quota of 2 CU.
  ASSERT_TRUE(c.ReattachGuest(kVm).ok());
  absl::StatusOr<int> cpus = (*pg)->OnlineCpus();
  // The guest onlines a hot-plugged vCPU asynchronously.
  for (const absl::Time end = absl::Now() + absl::Seconds(10);
       cpus.ok() && *cpus != 2 && absl::Now() < end; cpus = (*pg)->OnlineCpus()) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(cpus.ok()) << cpus.status();
  EXPECT_EQ(*cpus, 2) << "vCPUs online in the guest on host B";
  // The VM runs on host B with its address: the client's query reaches it there, and its tap is
  // on B's bridge.
  auto where = (*net)->Exec((*net)->client_netns(),
                            {"/usr/lib/postgresql/15/bin/psql", "-h", kAddress, "-U", "postgres",
                             "-Atc", "select host(inet_server_addr())"},
                            absl::Seconds(20));
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(absl::StripAsciiWhitespace(*where), kAddress);
  auto links = (*net)->Exec((*net)->host(1).netns, {"ip", "-o", "link", "show", "master", "br0"});
  ASSERT_TRUE(links.ok()) << links.status();
  EXPECT_NE(links->find("tap"), std::string::npos) << *links;

  // The load is gone: the VM scales down to 1 CU on node b as the load average decays, and the
  // ledger follows (the agent lowers its permit after the downscale). Both at once: near the
  // threshold the agent may scale up once more before the load average settles.
  std::optional<absl::Time> scaled_down;
  absl::StatusOr<api::v1::ListVmsResponse> vms;
  std::string agent_b;
  for (const absl::Time end = absl::Now() + absl::Seconds(150); absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(250))) {
    absl::StatusOr<AgentStatus> b = c.AgentStatus("b");
    if (!b.ok()) continue;
    agent_b = b->DebugString();
    const api::v1::VmStatus* vm = VmStatus(*b, kVm);
    if (vm == nullptr || vm->current().milli_cpu() != 1000 ||
        QuotaMilli(vm->host_cgroup()) != 1000) {
      continue;
    }
    if (!scaled_down) scaled_down = absl::Now();
    vms = c.SchedulerVms();
    if (!vms.ok()) continue;
    bool in_ledger = false;
    for (const api::v1::VmState& v : vms->vms()) {
      if (v.vm() == kVm) in_ledger = v.permit().milli_cpu() == 1000;
    }
    if (in_ledger) break;
  }
  ASSERT_TRUE(scaled_down.has_value()) << "no scale-down on node b: " << agent_b;
  // The ledger agrees: the VM on b at 1 CU and nothing migrating; each node reserves what its
  // VMs' permits add up to, and node a is back under its watermark.
  ASSERT_TRUE(vms.ok()) << vms.status();
  std::map<std::string, int64_t> permits;
  for (const api::v1::VmState& v : vms->vms()) {
    EXPECT_FALSE(v.migrating()) << v.vm();
    permits[v.node()] += v.permit().memory_bytes();
    if (v.vm() == kVm) {
      EXPECT_EQ(v.node(), "b");
      EXPECT_EQ(v.permit().milli_cpu(), 1000) << "node b: " << agent_b;
      EXPECT_EQ(v.permit().memory_bytes(), kCu);
    }
  }
  auto nodes = c.SchedulerNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  for (const api::v1::NodeState& n : nodes->nodes()) {
    EXPECT_EQ(n.reserved().memory_bytes(), permits[n.node()]) << n.DebugString();
    EXPECT_LE(n.reserved().memory_bytes(), n.watermark().memory_bytes()) << n.DebugString();
  }
  const absl::Time ledger_down = absl::Now();

  // The figures.
  const auto& p = result->progress;
  const absl::Time start = (*bench)->started();
  std::string figures = absl::StrFormat(
      "postgres guest boot-to-ready: %.1f s (QEMU start to PostgreSQL accepting connections)\n"
      "pgbench -c 4 for %.0f s: %d transactions, %d failed, %d clients aborted, exit %d\n"
      "2-CU permit at +%.1f s, vCPU hot-plugged by +%.1f s; migration +%.1f s to +%.1f s"
      " (%s); run ended +%.1f s; 1 CU again +%.1f s (ledger +%.1f s)\n"
      "TPS at 1 CU on host A: %.1f; during the migration: %.1f; at 2 CU on host B: %.1f\n"
      "longest gap between transactions: %.0f ms, ending at +%.1f s\n",
      absl::ToDoubleSeconds(boot), absl::ToDoubleSeconds(bench_end - start), result->transactions,
      result->failed, result->aborted_clients, result->exit_code,
      absl::ToDoubleSeconds(*permit_up - start), absl::ToDoubleSeconds(*scaled_up - start),
      absl::ToDoubleSeconds(*migration_started - start), absl::ToDoubleSeconds(*migrated - start),
      migration_text, absl::ToDoubleSeconds(bench_end - start),
      absl::ToDoubleSeconds(*scaled_down - start), absl::ToDoubleSeconds(ledger_down - start),
      MeanTps(p, start, *permit_up), MeanTps(p, *migration_started, *migrated),
      MeanTps(p, *migrated + absl::Seconds(1), bench_end),
      absl::ToDoubleMilliseconds(result->longest_gap),
      absl::ToDoubleSeconds(result->longest_gap_end - start));
  std::printf("%s", figures.c_str());
  if (const char* out = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR")) {
    std::ofstream(std::string(out) + "/figures.txt") << figures;
  }
}

}  // namespace
}  // namespace autoscale::demo
