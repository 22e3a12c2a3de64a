// Live migration between two "hosts" (network namespaces of testing::HostsNetwork) over TCP: the
// PostgreSQL guest runs on host A with a tap on A's bridge and its own address; a client in the
// client namespace holds one connection to it; the VM migrates to a target QEMU on host B that
// listens on B's address; the same connection keeps answering (no reconnection) from the same
// guest address, and the data written before the move is there.
#include <libpq-fe.h>
#include <sys/stat.h>

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
#include "neonvm/guest/image.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/migration/migration.h"

namespace autoscale::neonvm::migration {
namespace {

using ::autoscale::testing::QueryOne;

using Conn = std::unique_ptr<PGconn, void (*)(PGconn*)>;

// The inode of a network namespace, to tell which one a process is in.
ino_t NetnsInode(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(MigrationHosts, MovesAPostgresVmToAnotherHostOverTcpKeepingItsAddressAndConnections) {
  AUTOSCALE_REQUIRE_POSTGRES_GUEST();
  AUTOSCALE_REQUIRE_HOSTS_NETWORK();
  absl::StatusOr<std::unique_ptr<testing::HostsNetwork>> made = testing::HostsNetwork::Create();
  ASSERT_TRUE(made.ok()) << made.status();
  testing::HostsNetwork& net = **made;
  testing::TempDir dir;
  absl::StatusOr<launcher::VmSpec> spec = testing::PostgresGuestSpec("pg-move", dir.path());
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string guest_ip = "10.77.0.50";
  spec->host_forwards.clear();
  spec->taps = {{.bridge = net.host(0).bridge}};
  spec->kernel_args = {
      absl::StrCat("autoscale.ip=", guest_ip, "/", testing::HostsNetwork::kPrefixLength)};
  const std::string host_a = "/run/netns/" + net.host(0).netns;
  const std::string host_b = "/run/netns/" + net.host(1).netns;

  launcher::StartOptions on_a, on_b;
  on_a.netns = host_a;
  on_b.netns = host_b;
  auto source = launcher::Vm::Start(*spec, on_a);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->Resume().ok());

  // One connection from the client namespace (its socket is made there), held throughout.
  // tcp_user_timeout bounds a query on a connection the move broke.
  const std::string conninfo =
      absl::StrCat("host=", guest_ip, " user=postgres dbname=postgres connect_timeout=2",
                   " tcp_user_timeout=20000");
  Conn conn(nullptr, PQfinish);
  const absl::Time deadline = absl::Now() + absl::Seconds(90);
  while (absl::Now() < deadline) {
    ASSERT_TRUE(
        net.RunIn(net.client_netns(), [&] { conn.reset(PQconnectdb(conninfo.c_str())); }).ok());
    if (PQstatus(conn.get()) == CONNECTION_OK) break;
    ASSERT_TRUE((*source)->Running()) << (*source)->LogTail();
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  const std::string backend = QueryOne(conn.get(), "select pg_backend_pid()");
  EXPECT_EQ(QueryOne(conn.get(), "select host(inet_server_addr())"), guest_ip);
  EXPECT_EQ(QueryOne(conn.get(),
                     "create table moved as select generate_series(1, 5000) i; "
                     "select count(*) from moved"),
            "5000");

  // The target runs on host B and listens on B's address; the stream crosses the fabric.
  auto target = StartTarget(**source, on_b);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(NetnsInode(absl::StrCat("/proc/", (*target)->pid(), "/ns/net")), NetnsInode(host_b));
  MigrationOptions options;
  options.listen_address = net.host(1).address;
  // Under TCG precopy of a running guest can lose a write; postcopy does not (migration.h).
  options.allow_postcopy = true;
  options.postcopy_after_passes = 1;
  options.timeout = absl::Seconds(120);
  auto stats = Migrate(**source, **target, options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  std::printf("migrated over TCP to %s in %.2f s (downtime %.0f ms, %lld bytes, postcopy %d)\n",
              net.host(1).address.c_str(), absl::ToDoubleSeconds(stats->total_time),
              absl::ToDoubleMilliseconds(stats->downtime),
              static_cast<long long>(stats->transferred_bytes), stats->postcopy);
  EXPECT_FALSE((*source)->Running());

  // The same connection, the same backend, the same address, the data.
  EXPECT_EQ(QueryOne(conn.get(), "select count(*) from moved"), "5000");
  EXPECT_EQ(QueryOne(conn.get(), "select pg_backend_pid()"), backend) << "reconnected";
  EXPECT_EQ(QueryOne(conn.get(), "select host(inet_server_addr())"), guest_ip);
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK);
  // The VM's tap is on host B's bridge now.
  auto links = net.Exec(net.host(1).netns, {"ip", "-o", "link", "show", "master", "br0"});
  ASSERT_TRUE(links.ok()) << links.status();
  EXPECT_TRUE(absl::StrContains(*links, "tap")) << *links;
  conn.reset();
  EXPECT_TRUE((*target)->Stop().ok());
}

}  // namespace
}  // namespace autoscale::neonvm::migration
