// The hosts network: the segment joins the client and both hosts, a tap made in a host's
// namespace sits on that host's bridge, and nothing is left behind (nor by a killed process).
#include "autoscale/testing/hosts_network.h"

#include <net/if.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::testing {
namespace {

bool NetnsExists(const std::string& name) { return std::filesystem::exists("/run/netns/" + name); }

TEST(HostsNetwork, JoinsClientAndHostsAndRemovesEverything) {
  AUTOSCALE_REQUIRE_HOSTS_NETWORK();
  std::vector<std::string> names;
  {
    absl::StatusOr<std::unique_ptr<HostsNetwork>> net = HostsNetwork::Create();
    ASSERT_TRUE(net.ok()) << net.status();
    HostsNetwork& n = **net;
    names = {n.host(0).netns, n.host(1).netns, n.client_netns(), n.fabric_netns()};
    for (const std::string& ns : names) EXPECT_TRUE(NetnsExists(ns)) << ns;

    // Client to each host, and host to host, across the fabric's bridge.
    for (int i = 0; i < 2; ++i) {
      auto ping =
          n.Exec(n.client_netns(), {"busybox", "ping", "-c", "1", "-W", "5", n.host(i).address});
      EXPECT_TRUE(ping.ok()) << ping.status();
    }
    auto ping =
        n.Exec(n.host(0).netns, {"busybox", "ping", "-c", "1", "-W", "5", n.host(1).address});
    EXPECT_TRUE(ping.ok()) << ping.status();
    // The addresses exist only inside the namespaces.
    auto here = n.Exec(n.fabric_netns(), {"ip", "-4", "addr"});
    ASSERT_TRUE(here.ok()) << here.status();
    EXPECT_FALSE(absl::StrContains(*here, "10.77.0.")) << *here;

    // A tap made by a thread in host A's namespace joins host A's bridge, and only there.
    std::string tap_error;
    int tap_fd = -1;
    ASSERT_TRUE(n.RunIn(n.host(0).netns, [&] {
                   auto tap = neonvm::launcher::OpenTap(n.host(0).bridge, "tapvm");
                   if (!tap.ok()) {
                     tap_error = tap.status().ToString();
                     return;
                   }
                   tap_fd = tap->fd;
                 }).ok());
    ASSERT_EQ(tap_error, "");
    auto link = n.Exec(n.host(0).netns, {"ip", "link", "show", "tapvm"});
    ASSERT_TRUE(link.ok()) << link.status();
    EXPECT_TRUE(absl::StrContains(*link, "master br0")) << *link;
    EXPECT_FALSE(n.Exec(n.host(1).netns, {"ip", "link", "show", "tapvm"}).ok());
    close(tap_fd);
  }
  for (const std::string& ns : names) EXPECT_FALSE(NetnsExists(ns)) << ns << " left behind";
}

TEST(HostsNetwork, CreateRemovesWhatAKilledProcessLeft) {
  AUTOSCALE_REQUIRE_HOSTS_NETWORK();
  // A pid that no longer runs: a child that has exited and been reaped.
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string orphan = absl::StrCat("ashn", child, "-0-hostA");
  ASSERT_EQ(system(("ip netns add " + orphan).c_str()), 0);
  ASSERT_TRUE(NetnsExists(orphan));
  absl::StatusOr<std::unique_ptr<HostsNetwork>> net = HostsNetwork::Create();
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_FALSE(NetnsExists(orphan));
  if (NetnsExists(orphan)) system(("ip netns del " + orphan).c_str());
}

}  // namespace
}  // namespace autoscale::testing
