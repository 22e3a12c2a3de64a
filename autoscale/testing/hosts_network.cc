#include "autoscale/testing/hosts_network.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/base/subprocess.h"
#include "autoscale/testing/skip.h"
#include "glog/logging.h"

namespace autoscale::testing {
namespace {

// Namespace names: "<kPrefix><pid>-<n>-<role>", so a later Create can tell whose they are.
constexpr char kPrefix[] = "ashn";
constexpr char kNetnsDir[] = "/run/netns";

absl::StatusOr<std::string> Run(const std::vector<std::string>& argv, absl::Duration timeout) {
  char out_path[] = "/tmp/hosts-network-XXXXXX";
  int fd = mkstemp(out_path);
  if (fd < 0) return absl::ErrnoToStatus(errno, "mkstemp");
  unlink(out_path);
  SpawnOptions options;
  options.output_fd = fd;
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv, options);
  if (!p.ok()) {
    close(fd);
    return p.status();
  }
  absl::StatusOr<int> status = (*p)->Wait(timeout);
  std::string output;
  char buf[4096];
  ssize_t n;
  lseek(fd, 0, SEEK_SET);
  while ((n = read(fd, buf, sizeof(buf))) > 0) output.append(buf, n);
  close(fd);
  const std::string command = absl::StrJoin(argv, " ");
  if (!status.ok()) {
    (*p)->Kill();
    return Annotate(status.status(), absl::StrCat(command, ": ", output));
  }
  if (*status != 0) {
    return absl::InternalError(
        absl::StrCat(command, ": ", DescribeWaitStatus(*status), ": ", output));
  }
  return output;
}

absl::Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, absl::Seconds(10)).status();
}

// Deletes namespaces named by processes that no longer run.
void RemoveOrphans() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kNetnsDir, ec)) {
    std::string name = entry.path().filename();
    if (!absl::StartsWith(name, kPrefix)) continue;
    std::vector<std::string> parts = absl::StrSplit(name.substr(sizeof(kPrefix) - 1), '-');
    int pid = 0;
    if (parts.empty() || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    LOG(INFO) << "removing network namespace " << name << " left by process " << pid;
    Ip({"netns", "del", name}).IgnoreError();
  }
}

}  // namespace

std::string HostsNetworkMissing() {
  if (std::string why = RootMissing(); !why.empty()) return "network namespaces " + why;
  for (const char* tool : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(tool, X_OK) == 0) return "";
  }
  return "ip (iproute2) is missing";
}

absl::StatusOr<std::unique_ptr<HostsNetwork>> HostsNetwork::Create() {
  RemoveOrphans();
  static std::atomic<int> counter{0};
  const std::string base = absl::StrCat(kPrefix, getpid(), "-", counter++, "-");
  std::unique_ptr<HostsNetwork> net(new HostsNetwork());
  net->fabric_ = base + "fabric";
  net->client_ = base + "client";
  net->hosts_ = {{base + "hostA", "br0", "10.77.0.1"}, {base + "hostB", "br0", "10.77.0.2"}};
  // From here on the destructor removes whatever was made.
  for (const std::string& ns :
       {net->fabric_, net->client_, net->hosts_[0].netns, net->hosts_[1].netns}) {
    RETURN_IF_ERROR(Ip({"netns", "add", ns}));
    net->created_.push_back(ns);
    RETURN_IF_ERROR(Ip({"-n", ns, "link", "set", "lo", "up"}));
  }
  const std::string& f = net->fabric_;
  RETURN_IF_ERROR(Ip({"-n", f, "link", "add", "brf", "type", "bridge"}));
  RETURN_IF_ERROR(Ip({"-n", f, "link", "set", "brf", "up"}));
  const std::string prefix = absl::StrCat("/", kPrefixLength);
  for (int i = 0; i < 2; ++i) {
    const Host& h = net->hosts_[i];
    const std::string port = i == 0 ? "fA" : "fB";
    RETURN_IF_ERROR(Ip({"link", "add", "upl", "netns", h.netns, "type", "veth", "peer", "name",
                        port, "netns", f}));
    RETURN_IF_ERROR(Ip({"-n", f, "link", "set", port, "master", "brf", "up"}));
    RETURN_IF_ERROR(Ip({"-n", h.netns, "link", "add", h.bridge, "type", "bridge"}));
    RETURN_IF_ERROR(Ip({"-n", h.netns, "link", "set", "upl", "master", h.bridge, "up"}));
    RETURN_IF_ERROR(Ip({"-n", h.netns, "addr", "add", h.address + prefix, "dev", h.bridge}));
    RETURN_IF_ERROR(Ip({"-n", h.netns, "link", "set", h.bridge, "up"}));
  }
  RETURN_IF_ERROR(Ip({"link", "add", "eth0", "netns", net->client_, "type", "veth", "peer", "name",
                      "fC", "netns", f}));
  RETURN_IF_ERROR(Ip({"-n", f, "link", "set", "fC", "master", "brf", "up"}));
  RETURN_IF_ERROR(
      Ip({"-n", net->client_, "addr", "add", std::string(kClientAddress) + prefix, "dev", "eth0"}));
  RETURN_IF_ERROR(Ip({"-n", net->client_, "link", "set", "eth0", "up"}));
  return net;
}

HostsNetwork::~HostsNetwork() {
  for (const std::string& ns : created_) {
    absl::Status s = Ip({"netns", "del", ns});
    if (!s.ok()) LOG(WARNING) << "removing network namespace " << ns << ": " << s;
  }
}

absl::Status HostsNetwork::RunIn(const std::string& netns, const std::function<void()>& fn) {
  const std::string path = absl::StrCat(kNetnsDir, "/", netns);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  absl::Status status;
  // A thread of its own: setns changes only the calling thread's namespace, and this thread's
  // stays as it was.
  std::thread t([&] {
    if (setns(fd, CLONE_NEWNET) != 0) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("setns ", path));
      return;
    }
    fn();
  });
  t.join();
  close(fd);
  return status;
}

absl::StatusOr<std::string> HostsNetwork::Exec(const std::string& netns,
                                               const std::vector<std::string>& argv,
                                               absl::Duration timeout) {
  std::vector<std::string> full = {"ip", "netns", "exec", netns};
  full.insert(full.end(), argv.begin(), argv.end());
  return Run(full, timeout);
}

}  // namespace autoscale::testing
