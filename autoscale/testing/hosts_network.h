// Two "hosts" and a client on one L2 segment, all network namespaces on this machine, for tests
// of VMs that keep their address when they move between hosts:
//
//   client ns: eth0 10.77.0.100/24 ──┐
//   host A ns: br0 10.77.0.1/24 ── upl ─┤ fabric ns: bridge brf
//   host B ns: br0 10.77.0.2/24 ── upl ─┘
//
// A VM on a host joins that host's br0 with a tap (launcher::TapInterface{.bridge = "br0"}, its
// Vm started by a thread inside the host's namespace: RunIn). Everything is created by Create and
// removed by the destructor; namespaces left by a process that was killed first are removed by
// the next Create. Addresses exist only inside these namespaces. Needs root.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<HostsNetwork> net, HostsNetwork::Create());
//   net->RunIn(net->host(0).netns, [&] { vm = launcher::Vm::Start(spec); });
//   net->Exec(net->client_netns(), {"ping", "-c1", "10.77.0.50"});
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace autoscale::testing {

// Empty when this process can make network namespaces, bridges and veth pairs; otherwise what
// is missing.
std::string HostsNetworkMissing();

#define AUTOSCALE_REQUIRE_HOSTS_NETWORK() \
  AUTOSCALE_REQUIRE(::autoscale::testing::HostsNetworkMissing())

class HostsNetwork {
 public:
  struct Host {
    std::string netns;
    // The host's bridge, which its VMs' taps join.
    std::string bridge;
    // The host's own address on the segment (where its agent and migration targets listen).
    std::string address;
  };

  static absl::StatusOr<std::unique_ptr<HostsNetwork>> Create();
  // Deletes the namespaces (their bridges, veths and taps go with them).
  ~HostsNetwork();
  HostsNetwork(const HostsNetwork&) = delete;
  HostsNetwork& operator=(const HostsNetwork&) = delete;

  const Host& host(int i) const { return hosts_[i]; }
  const std::string& client_netns() const { return client_; }
  const std::string& fabric_netns() const { return fabric_; }
  static constexpr char kClientAddress[] = "10.77.0.100";
  // The segment's prefix length; VMs take addresses in 10.77.0.0/24 other than .1, .2, .100.
  static constexpr int kPrefixLength = 24;

  // Runs `fn` on a thread that has entered `netns` (so taps and sockets it makes are there) and
  // waits for it.
  absl::Status RunIn(const std::string& netns, const std::function<void()>& fn);

  // Runs `argv` in `netns` (ip netns exec) and returns its output; an error, with the output,
  // when it exits non-zero or outlives `timeout`.
  absl::StatusOr<std::string> Exec(const std::string& netns, const std::vector<std::string>& argv,
                                   absl::Duration timeout = absl::Seconds(10));

 private:
  HostsNetwork() = default;

  std::vector<std::string> created_;  // namespaces to delete
  std::vector<Host> hosts_;
  std::string client_;
  std::string fabric_;
};

}  // namespace autoscale::testing
