// Issue 16 item 5 end to end: the LFC working-set windows the monitor reads from a real
// PostgreSQL 15 (--lfc_windows_function) travel over the monitor's gRPC stream to the agent's
// runner, whose core turns them into the LFC part of the goal and grows the VM for it.
//
// Vanilla PostgreSQL has no LFC, so the test defines Neon's
// neon.approximate_working_set_size_seconds(seconds) in it, answering from a table the test
// changes. Everything else is the real thing: libpq, the monitor's AgentLink and MetricsReader,
// the gRPC transport on loopback, the agent's Runner and core, and the scheduler library's ledger
// in process. The VM is a driver that records its resizes (no QEMU needed for the LFC goal).
#include <libpq-fe.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/agent/events.h"
#include "autoscale/agent/runner.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/monitor/grpc_client.h"
#include "autoscale/rpc/monitor/grpc_server.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "autoscale/scheduler/request_handler.h"
#include "autoscale/testing/postgres_test_server.h"
#include "gtest/gtest.h"
#include "lfc/postgres_resizer.h"
#include "lfc/resizer.h"
#include "monitor/agent_link.h"
#include "monitor/metrics.h"
#include "monitor/monitor.h"

namespace autoscale::monitor {
namespace {

using core::Resources;

constexpr Resources kCu{1000, kGiB};
// 2.5 CUs of working set: pages * 8 KiB / lfcToMemoryRatio (0.75) / 1 GiB = 2.5.
constexpr int64_t kPages = 245760;

// A /proc whose load and memory ask for under one CU (the LFC alone can ask for more).
std::string FixtureProc() {
  const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/proc";
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/loadavg") << "0.10 0.10 0.10 1/100 4000\n";
  std::ofstream(dir + "/meminfo") << "MemTotal: 1000000 kB\nMemAvailable: 800000 kB\n"
                                     "Cached: 100000 kB\n";
  return dir;
}

// The VM: its size is what the runner last resized it to.
class RecordingVm : public agent::VmDriver {
 public:
  absl::StatusOr<Resources> Current() override {
    absl::MutexLock lock(&mu_);
    return at_;
  }
  absl::StatusOr<Resources> Resize(const Resources& target, absl::Duration) override {
    absl::MutexLock lock(&mu_);
    at_ = target;
    return at_;
  }

 private:
  absl::Mutex mu_;
  Resources at_ ABSL_GUARDED_BY(mu_) = kCu;
};

absl::Status Sql(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  absl::Status s;
  if (PQstatus(c) != CONNECTION_OK) {
    s = absl::UnavailableError(PQerrorMessage(c));
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      s = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
    }
    PQclear(r);
  }
  PQfinish(c);
  return s;
}

// The runner's LFC part of the goal, in CUs, from its metrics page (-1 if absent).
double LfcGoal(const Metrics& metrics) {
  const std::string page = metrics.Render();
  const std::string key = "component=\"lfc\"} ";
  const size_t at = page.find(key);
  if (at == std::string::npos) return -1;
  const size_t end = page.find('\n', at);
  double v = -1;
  if (!absl::SimpleAtod(page.substr(at + key.size(), end - at - key.size()), &v)) return -1;
  return v;
}

bool Eventually(const std::function<bool()>& done) {
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (!done() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(20));
  return done();
}

TEST(LfcGoalEndToEnd, WindowsFromPostgresDriveTheAgentsGoal) {
  AUTOSCALE_REQUIRE_POSTGRES();
  absl::StatusOr<std::unique_ptr<testing::PostgresTestServer>> pg =
      testing::PostgresTestServer::Start({});
  ASSERT_TRUE(pg.ok()) << pg.status();
  const std::string conninfo = (*pg)->ConnInfo();
  ASSERT_TRUE(
      Sql(conninfo, absl::StrCat("CREATE SCHEMA neon; CREATE TABLE lfc_pages(pages bigint); "
                                 "INSERT INTO lfc_pages VALUES (",
                                 kPages,
                                 "); CREATE FUNCTION neon.approximate_working_set_size_seconds("
                                 "integer) RETURNS integer LANGUAGE sql AS "
                                 "'SELECT pages::integer FROM lfc_pages'"))
          .ok());
  // What the monitor daemon's --lfc_windows_function reads.
  absl::StatusOr<std::vector<double>> direct = lfc::ReadPostgresWorkingSet({.conninfo = conninfo});
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_EQ(direct->size(), 60u);
  EXPECT_EQ(direct->front(), kPages);

  // The monitor: its metrics carry the windows read from Postgres at each push.
  ManualClock monitor_clock;
  lfc::NoopResizer resizer;
  Monitor monitor(MonitorOptions{}, monitor_clock, resizer,
                  {.read_stat = []() -> absl::StatusOr<cgroup::MemoryStat> {
                     return cgroup::MemoryStat{.anon_bytes = 100 * kMiB};
                   },
                   .set_threshold = nullptr,
                   .request_upscale = nullptr});
  ASSERT_TRUE(monitor.Start(kGiB).ok());
  MetricsReader metrics(FixtureProc(), [conninfo] {
    absl::StatusOr<std::vector<double>> w = lfc::ReadPostgresWorkingSet({.conninfo = conninfo});
    return w.ok() ? *w : std::vector<double>();
  });
  AgentLink link(monitor, metrics, {.metrics_interval = absl::Milliseconds(100)});
  absl::StatusOr<std::unique_ptr<rpc::Server>> server =
      rpc::monitor::StartGrpcServer(link, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();

  // The agent's side: the ledger in process, a node of 8 CUs, the VM placed at 1 CU (1..4).
  ledger::Ledger ledger({.placement = {.randomize = false}});
  scheduler::RequestHandler handler(ledger, kCu);
  rpc::scheduler::InProcessClient scheduler(handler);
  api::v1::RegisterNodeRequest node;
  node.set_node("n1");
  *node.mutable_total() = core::ToProto(kCu * 8);
  node.set_agent_address("n1:7000");
  ASSERT_TRUE(scheduler.RegisterNode(node).ok());
  api::v1::PlaceVmRequest place;
  place.set_vm("vm1");
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(4);
  place.set_node("n1");
  ASSERT_TRUE(scheduler.PlaceVm(place).ok());

  agent::RunnerOptions o;
  o.node = "n1";
  o.vm = "vm1";
  o.state.compute_unit = kCu;
  o.state.scaling.enable_lfc_metrics = true;
  o.bounds = {1, 4};
  o.monitor_address = (*server)->address();
  o.monitor_retry = absl::Milliseconds(50);
  auto vm = std::make_unique<RecordingVm>();
  RecordingVm* vm_ptr = vm.get();
  agent::EventLog events;
  Metrics agent_metrics;
  agent::Runner runner(
      o, std::move(vm), scheduler,
      [](const std::string& address, rpc::monitor::MonitorClient::Callbacks callbacks,
         absl::Duration timeout) {
        return rpc::monitor::ConnectGrpc(address, std::move(callbacks), timeout);
      },
      events, agent_metrics, Clock::Real());
  ASSERT_TRUE(runner.Start().ok());

  // The LFC part is Postgres's working set (2.5 CUs), and the VM grows to ceil(2.5) = 3 CUs for
  // it: load and memory alone ask for under 1.
  EXPECT_TRUE(Eventually([&] { return LfcGoal(agent_metrics) == 2.5; }))
      << "lfc goal " << LfcGoal(agent_metrics) << "\n"
      << agent_metrics.Render();
  EXPECT_TRUE(Eventually([&] { return *vm_ptr->Current() == kCu * 3; }))
      << vm_ptr->Current()->ToString();

  // Postgres's working set changes: the goal follows it.
  ASSERT_TRUE(Sql(conninfo, absl::StrCat("UPDATE lfc_pages SET pages = ", kPages * 2 / 5)).ok());
  EXPECT_TRUE(Eventually([&] { return LfcGoal(agent_metrics) == 1.0; }))
      << "lfc goal " << LfcGoal(agent_metrics);

  runner.Stop();
  link.Disconnect();
  (*server)->Shutdown(absl::Seconds(2));
}

}  // namespace
}  // namespace autoscale::monitor
