// One call into each installed library, through its installed headers, so that a consumer
// linking all of them is checked: the api messages and gRPC stubs, the core's config protos, the
// ledger, the LFC sizing and PostgreSQL resizer, the monitor, the QMP client, the VM launcher and
// hotplug driver, and the simulator;
// and base: the version compiled in is the installed package's (AUTOSCALE_PACKAGE_VERSION, from
// find_package or pkg-config --modversion). Each call's result is checked; prints
// "ok: <library>" per library and exits 1 on any mismatch.
#include <cstdio>
#include <memory>
#include <string>

#include "autoscale/api/config.pb.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/base/version.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/sim/trace.h"
#include "grpcpp/create_channel.h"
#include "lfc/postgres_resizer.h"
#include "lfc/sizing.h"
#include "monitor/cgroup/layout.h"
#include "monitor/options.h"
#include "neonvm/hotplug/resizer.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"

namespace {

int failures = 0;

void Check(bool ok, const char* library, const std::string& detail) {
  std::printf("%s: %s (%s)\n", ok ? "ok" : "FAILED", library, detail.c_str());
  if (!ok) ++failures;
}

}  // namespace

int main() {
  using namespace autoscale;
  constexpr int64_t kGiB = int64_t{1} << 30;

  Check(std::string(Version()) == AUTOSCALE_PACKAGE_VERSION, "base",
        std::string("Version() ") + Version() + ", package " + AUTOSCALE_PACKAGE_VERSION);

  api::v1::ScalingConfig proto;
  proto.set_load_average_fraction_target(0.5);
  std::string wire = proto.SerializeAsString();
  api::v1::ScalingConfig parsed;
  Check(parsed.ParseFromString(wire) && parsed.load_average_fraction_target() == 0.5, "api",
        "ScalingConfig round trip");

  auto channel = grpc::CreateChannel("unix:/nonexistent", grpc::InsecureChannelCredentials());
  Check(api::v1::Scheduler::NewStub(channel) != nullptr, "api_grpc", "Scheduler stub");

  absl::StatusOr<core::ScalingConfig> config = core::ResolveScalingConfig(proto);
  Check(config.ok() && config->load_average_fraction_target == 0.5, "core_proto",
        config.status().ToString());

  ledger::Ledger ledger(ledger::LedgerOptions{});
  auto node = ledger.RegisterNode({.name = "n1", .total = {8000, 32 * kGiB}});
  Check(node.ok(), "ledger", node.status().ToString());

  Check(lfc::CacheSizeBytes(4 * kGiB) > 0, "lfc", "CacheSizeBytes");

  auto resizer = lfc::PostgresResizer::Create({.conninfo = "host=/nonexistent", .setting = "a b"});
  Check(!resizer.ok() && absl::IsInvalidArgument(resizer.status()), "lfc_postgres",
        resizer.status().ToString());

  auto stat = monitor::cgroup::ParseMemoryStat("total_rss 4096\ntotal_cache 8192\n", "memory.stat");
  Check(stat.ok() && stat->anon_bytes == 4096 && stat->file_bytes == 8192, "monitor",
        stat.status().ToString());

  auto options = monitor::OptionsFromProto(api::v1::MonitorConfig{});
  Check(options.ok() && monitor::ThresholdBytes(4 * kGiB, *options) > 0, "monitor_options",
        options.status().ToString());

  auto qmp = neonvm::qmp::QmpClient::Connect("unix:/nonexistent/qmp.sock");
  Check(!qmp.ok(), "qmp", qmp.status().ToString());

  neonvm::launcher::VmSpec spec;
  spec.cpus_max = 0;  // fewer than cpus_min
  absl::Status valid = neonvm::launcher::Validate(spec);
  Check(!valid.ok(), "launcher", valid.ToString());

  const std::string size = neonvm::hotplug::ToString({.cpus = 2, .memory_bytes = 768 << 20});
  Check(size == "2 CPUs, 768 MiB", "hotplug", size);

  auto trace = sim::ParseTraceCsv("time_s,vm,cpu_cores,memory_mib\n0,db-1,0.5,1024\n", "t.csv");
  Check(trace.ok() && trace->vms.size() == 1 && trace->vms[0].name == "db-1", "sim",
        trace.status().ToString());

  return failures == 0 ? 0 : 1;
}
