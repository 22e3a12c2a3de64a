// The PostgreSQL guest (neonvm/guest/build --postgres) boots under QEMU with its data disk, and a
// client on the host gets `select 1` through libpq over the forwarded port on 127.0.0.1. Prints
// the boot-to-ready time (QEMU start to the first answered query); it is not asserted. As root,
// the same guest also has a tap on a host's bridge (testing::HostsNetwork) with the address
// given on its kernel command line, and psql in the client namespace reaches it there.
#include <libpq-fe.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "autoscale/testing/hosts_network.h"
#include "autoscale/testing/postgres_test_server.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/guest/console.h"
#include "neonvm/guest/image.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::neonvm::guest {
namespace {

using ::autoscale::testing::QueryOne;

TEST(PostgresGuest, BootsAndAnswersOverTheForwardedPort) {
  AUTOSCALE_REQUIRE_POSTGRES_GUEST();
  testing::TempDir dir;
  absl::StatusOr<launcher::VmSpec> spec = testing::PostgresGuestSpec("pg-guest", dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::unique_ptr<testing::HostsNetwork> net;
  const std::string guest_ip = "10.77.0.50";
  if (std::string missing = testing::HostsNetworkMissing(); missing.empty()) {
    absl::StatusOr<std::unique_ptr<testing::HostsNetwork>> made = testing::HostsNetwork::Create();
    ASSERT_TRUE(made.ok()) << made.status();
    net = std::move(*made);
    spec->taps = {{.bridge = net->host(0).bridge}};
    spec->kernel_args = {
        absl::StrCat("autoscale.ip=", guest_ip, "/", testing::HostsNetwork::kPrefixLength)};
  } else {
    std::printf("not checking the tap network: %s\n", missing.c_str());
  }

  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<launcher::Vm>> vm;
  if (net != nullptr) {
    // Host A's thread makes the tap there, on host A's bridge.
    ASSERT_TRUE(net->RunIn(net->host(0).netns, [&] { vm = launcher::Vm::Start(*spec); }).ok());
  } else {
    vm = launcher::Vm::Start(*spec);
  }
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto console = GuestConsole::Connect((*vm)->serial_path());
  ASSERT_TRUE(console.ok()) << console.status();
  ASSERT_TRUE((*vm)->Resume().ok());
  auto port = (*vm)->HostPort(kPostgresPort);
  ASSERT_TRUE(port.ok()) << port.status();

  // QEMU's user-mode network accepts on the host side before anything listens in the guest,
  // so readiness is a query that gets an answer. connect_timeout bounds each attempt.
  const std::string conninfo = absl::StrCat("host=127.0.0.1 port=", *port,
                                            " user=postgres dbname=postgres connect_timeout=2");
  const absl::Time deadline = start + absl::Seconds(90);
  std::string answer;
  while (absl::Now() < deadline) {
    answer = QueryOne(conninfo, "select 1");
    if (answer == "1") break;
    ASSERT_TRUE((*vm)->Running()) << (*vm)->LogTail();
    absl::SleepFor(absl::Milliseconds(100));
  }
  const absl::Duration ready = absl::Now() - start;
  ASSERT_EQ(answer, "1") << "no answer within 90 s; boot log: "
                         << console->get()->Run("cat /var/log/boot.log").value_or("?");
  std::printf("postgres guest boot-to-ready: %.2f s (QEMU start to the first `select 1`)\n",
              absl::ToDoubleSeconds(ready));
  RecordProperty("boot_to_ready_ms", static_cast<int>(absl::ToInt64Milliseconds(ready)));
  // The guest's side of it: its uptime now (the kernel's clock under TCG runs while the host
  // schedules the vCPU) and when its boot script saw PostgreSQL up.
  std::printf("guest uptime at ready: %s\n",
              console->get()->Run("cut -d' ' -f1 /proc/uptime").value_or("?").c_str());

  // The data directory is the disk's, and the server writes to it.
  EXPECT_EQ(QueryOne(conninfo, "show data_directory"), "/pgdisk/pgdata");
  EXPECT_EQ(QueryOne(conninfo,
                     "create table t as select generate_series(1, 1000) i; "
                     "select count(*) from t"),
            "1000");
  EXPECT_EQ(QueryOne(conninfo, "select current_setting('server_version_num')::int / 10000"), "15");
  auto mounts = console->get()->Run("grep ' /pgdisk ' /proc/mounts");
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_TRUE(absl::StartsWith(*mounts, "/dev/vda /pgdisk ext4")) << *mounts;

  if (net != nullptr) {
    // From the client's namespace, across the fabric and host A's bridge, to the guest's own
    // address: no NAT, no forwarded port.
    auto psql = net->Exec(net->client_netns(),
                          {"/usr/lib/postgresql/15/bin/psql", "-h", guest_ip, "-U", "postgres",
                           "-Atc", "select count(*) from t"},
                          absl::Seconds(20));
    ASSERT_TRUE(psql.ok()) << psql.status() << "; boot log: "
                           << console->get()->Run("cat /var/log/boot.log").value_or("?");
    EXPECT_EQ(*psql, "1000\n");
  }
  EXPECT_TRUE((*vm)->Stop().ok());
}

}  // namespace
}  // namespace autoscale::neonvm::guest
