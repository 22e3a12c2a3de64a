// The demo: the whole system scaling real VMs on one machine. A scheduler, two agents standing for
// nodes a and b, and two booted test guests running the monitor and a load generator. A live
// table (VMs with their permit and QEMU's host cgroup CPU quota and use, nodes with the summed
// CPU use of their VMs' cgroups, and the ledger) and the agents' event log show, in order:
//
//   1. scale-up on memory pressure      vm2's load ramps up; its monitor asks for memory
//   2. scale-down when the load drops   the monitor approves each step after shrinking the LFC
//   3. live migration                   vm1 grows node a past its watermark and moves to node b
//   4. partial grant on a full node     node b has memory but no CPU left for vm1
//   5. scale-down after the migration   vm1's load stops; its memory was intact after the move
//
// It ends with a summary (exit 0 when every step was seen): each step gives up at --duration,
// though a guest boot or a load generator's check under way is let finish. It stops every
// process it started and removes its files, also on Ctrl-C (after the action under way; a second
// Ctrl-C leaves at once, and the processes die with it but its files stay).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/base/init.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "neonvm/launcher/vm.h"

ABSL_FLAG(absl::Duration, duration, absl::Seconds(170),
          "How long the whole demo may take, boot and summary included.");
ABSL_FLAG(std::string, dir, "",
          "Keep the cluster's files (configs, logs, QEMU sockets) in this directory; default: a "
          "temporary one, removed at the end.");
ABSL_FLAG(bool, verbose, false, "Echo the daemons' logs.");

namespace autoscale::demo {
namespace {

using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterMissing;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;
using ::autoscale::testing::Guest;
using ::autoscale::testing::LoadReport;
using ::autoscale::testing::NodeOptions;
using ::autoscale::testing::VmStatus;

constexpr core::Resources kCu{1000, 512 * kMiB};

std::atomic<bool> g_interrupted{false};

void OnSignal(int) {
  if (g_interrupted.exchange(true)) _exit(130);  // a second Ctrl-C: leave now (children follow)
}

bool Interrupted() { return g_interrupted.load(); }

std::string Mib(int64_t bytes) { return absl::StrCat(bytes / kMiB, " MiB"); }

std::string Res(const api::v1::Resources& r) {
  return absl::StrFormat("%.1f CPU %5d MiB", r.milli_cpu() / 1000.0, r.memory_bytes() / kMiB);
}

// "-" when the status has no such resources.
std::string Res(bool has, const api::v1::Resources& r) { return has ? Res(r) : "-"; }

// "partial_grant" for EVENT_KIND_PARTIAL_GRANT.
std::string KindName(api::v1::EventKind kind) {
  std::string name = api::v1::EventKind_Name(kind);
  if (absl::StartsWith(name, "EVENT_KIND_")) name = name.substr(11);
  return absl::AsciiStrToLower(name);
}

struct LoggedEvent {
  int64_t at_ms;
  std::string node, vm;
  api::v1::EventKind kind;
  std::string text;
  int repeats = 1;
};

// Polls the scheduler and the agents, keeps the event log and draws the screen.
class Dashboard {
 public:
  Dashboard(Cluster& cluster, absl::Time start)
      : cluster_(cluster), start_(start), tty_(isatty(STDOUT_FILENO)) {}

  void Run() {
    while (!stop_.load()) {
      Poll();
      absl::SleepFor(absl::Seconds(1));
    }
    Poll();
  }
  void Stop() { stop_ = true; }

  void SetScene(const std::string& scene) {
    absl::MutexLock lock(&mu_);
    scene_ = scene;
    if (!tty_) std::printf("\n=== %s\n", scene.c_str());
  }

  // Whether the log has an event of `kind` for `vm`; its text.
  std::optional<std::string> FindEvent(const std::string& vm, api::v1::EventKind kind) {
    absl::MutexLock lock(&mu_);
    for (const LoggedEvent& e : all_) {
      if (e.vm == vm && e.kind == kind) return e.text;
    }
    return std::nullopt;
  }
  // Waits up to `timeout` for such an event (the dashboard polls the agents every second).
  std::optional<std::string> AwaitEvent(const std::string& vm, api::v1::EventKind kind,
                                        absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time end = absl::Now() + timeout;
    while (true) {
      if (std::optional<std::string> e = FindEvent(vm, kind)) return e;
      if (absl::Now() >= end || Interrupted()) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  int CountEvents(const std::string& vm, api::v1::EventKind kind) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const LoggedEvent& e : all_) n += (e.vm == vm && e.kind == kind) ? e.repeats : 0;
    return n;
  }

 private:
  // What a VM's host cgroup says: its CPU quota, and the CPU its QEMU used since the last poll,
  // in milli-CPU ("-" without a group).
  struct CgroupCpu {
    std::string quota = "-";
    std::string used = "-";
    int64_t used_milli = 0;
  };
  CgroupCpu ReadCgroup(const std::string& path, absl::Time now) {
    CgroupCpu out;
    if (path.empty()) return out;
    CgroupSeen& seen = cgroups_[path];
    if (seen.cgroup == nullptr) {
      absl::StatusOr<std::unique_ptr<neonvm::launcher::HostCgroup>> opened =
          neonvm::launcher::HostCgroup::Open(path);
      if (!opened.ok()) return out;
      seen.cgroup = *std::move(opened);
    }
    if (absl::StatusOr<int64_t> q = seen.cgroup->CpuQuota(); q.ok()) {
      out.quota = *q < 0 ? "none" : absl::StrCat(*q * 1000 / neonvm::launcher::kCpuPeriodUs, "m");
    }
    absl::StatusOr<int64_t> ns = seen.cgroup->CpuUsageNs();
    if (!ns.ok()) return out;
    if (seen.at != absl::InfinitePast() && now > seen.at) {
      out.used_milli = static_cast<int64_t>(static_cast<double>(*ns - seen.ns) * 1000 /
                                            absl::ToDoubleNanoseconds(now - seen.at));
      out.used = absl::StrCat(out.used_milli, "m");
    }
    seen.ns = *ns;
    seen.at = now;
    return out;
  }

  void Poll() {
    const absl::Time polled = absl::Now();
    std::vector<std::string> rows;
    rows.push_back(absl::StrFormat("%-6s %-4s %5s %9s %4s  %-18s %-6s %-6s %-18s %-18s %s", "VM",
                                   "NODE", "LOAD", "MEM USED", "GOAL", "PERMIT", "QUOTA", "CPU",
                                   "AGENT: VM HAS", "QEMU REPORTS", "STATE"));
    // Each node's VMs' QEMU CPU use as their host cgroups account it.
    std::map<std::string, int64_t> node_cpu_used;
    std::vector<LoggedEvent> fresh;
    for (const NodeOptions& n : cluster_.options().nodes) {
      uint64_t& since = since_[n.name];
      absl::StatusOr<api::v1::AgentStatus> s = cluster_.AgentStatus(n.name, since);
      if (!s.ok()) {
        rows.push_back(absl::StrFormat("%-6s %-4s (agent not answering)", "-", n.name));
        continue;
      }
      for (const api::v1::VmStatus& vm : s->vms()) {
        std::string state = vm.monitor_connected() ? "monitor connected" : "no monitor";
        if (vm.migrating()) state = "MIGRATING";
        const CgroupCpu cpu = ReadCgroup(vm.host_cgroup(), polled);
        node_cpu_used[n.name] += cpu.used_milli;
        rows.push_back(absl::StrFormat(
            "%-6s %-4s %5s %9s %4d  %-18s %-6s %-6s %-18s %-18s %s", vm.vm(), n.name,
            vm.has_load_avg_1m() ? absl::StrFormat("%.2f", vm.load_avg_1m()) : "-",
            vm.has_memory_usage_bytes() ? Mib(vm.memory_usage_bytes()) : "-", vm.goal_cu(),
            Res(vm.has_permit(), vm.permit()), cpu.quota, cpu.used, Res(vm.current()),
            Res(vm.has_observed(), vm.observed()), state));
      }
      for (const api::v1::AgentEvent& e : s->events()) {
        since = std::max<uint64_t>(since, e.seq());
        fresh.push_back({e.at_unix_ms(), n.name, e.vm(), e.kind(), e.text()});
      }
    }
    // The ledger: reservation-only VMs and each node against its watermark.
    std::vector<std::string> nodes;
    if (absl::StatusOr<api::v1::ListVmsResponse> vms = cluster_.SchedulerVms(); vms.ok()) {
      for (const api::v1::VmState& v : vms->vms()) {
        if (cluster_.guest(v.vm()) != nullptr) continue;
        rows.push_back(absl::StrFormat("%-6s %-4s %5s %9s %4s  %-18s %-6s %-6s %-18s %-18s %s",
                                       v.vm(), v.node(), "-", "-", "-", Res(v.permit()), "-", "-",
                                       "-", "-", "reserved in the ledger only (no guest)"));
      }
    }
    if (absl::StatusOr<api::v1::ListNodesResponse> ns = cluster_.SchedulerNodes(); ns.ok()) {
      // CPU USED: the sum of the node's QEMU cgroups' CPU use; a node whose ledger is full uses
      // at most its total, because each QEMU's quota is its permit.
      nodes.push_back(absl::StrFormat("%-4s  %-18s %-18s %-18s %-9s %s", "NODE", "RESERVED",
                                      "TOTAL", "WATERMARK", "CPU USED", ""));
      for (const api::v1::NodeState& n : ns->nodes()) {
        const bool above =
            n.reserved().milli_cpu() - n.migrating().milli_cpu() > n.watermark().milli_cpu() ||
            n.reserved().memory_bytes() - n.migrating().memory_bytes() >
                n.watermark().memory_bytes();
        nodes.push_back(absl::StrFormat("%-4s  %-18s %-18s %-18s %-9s %s", n.node(),
                                        Res(n.reserved()), Res(n.total()), Res(n.watermark()),
                                        absl::StrCat(node_cpu_used[n.node()], "m"),
                                        above ? "ABOVE WATERMARK" : ""));
      }
    }
    std::sort(fresh.begin(), fresh.end(),
              [](const LoggedEvent& x, const LoggedEvent& y) { return x.at_ms < y.at_ms; });
    absl::MutexLock lock(&mu_);
    for (LoggedEvent& e : fresh) {
      if (!all_.empty() && all_.back().vm == e.vm && all_.back().kind == e.kind &&
          all_.back().text == e.text && all_.back().node == e.node) {
        ++all_.back().repeats;  // the agent re-asks every 2 s on a full node: one line
        continue;
      }
      if (!tty_) std::printf("%s\n", Line(e).c_str());
      all_.push_back(std::move(e));
    }
    const absl::Time now = absl::Now();
    if (tty_) {
      std::string screen = "\033[H\033[2J";
      absl::StrAppendFormat(&screen, "autoscale demo  %5.0f s   %s\n\n",
                            absl::ToDoubleSeconds(now - start_), scene_);
      for (const std::string& r : rows) absl::StrAppend(&screen, r, "\n");
      absl::StrAppend(&screen, "\n");
      for (const std::string& r : nodes) absl::StrAppend(&screen, r, "\n");
      absl::StrAppend(&screen, "\nevents\n");
      const size_t shown = std::min<size_t>(all_.size(), 16);
      for (size_t i = all_.size() - shown; i < all_.size(); ++i) {
        absl::StrAppend(&screen, Line(all_[i]), "\n");
      }
      std::fputs(screen.c_str(), stdout);
      std::fflush(stdout);
    } else if (now - last_table_ >= absl::Seconds(10)) {
      last_table_ = now;
      std::printf("\n--- %.0f s\n", absl::ToDoubleSeconds(now - start_));
      for (const std::string& r : rows) std::printf("%s\n", r.c_str());
      for (const std::string& r : nodes) std::printf("%s\n", r.c_str());
      std::printf("\n");
      std::fflush(stdout);
    }
  }

  std::string Line(const LoggedEvent& e) const {
    std::string line = absl::StrFormat(
        "%6.1f s  %s/%-4s %-18s %s", absl::ToDoubleSeconds(absl::FromUnixMillis(e.at_ms) - start_),
        e.node, e.vm.empty() ? "-" : e.vm, KindName(e.kind), e.text);
    if (e.repeats > 1) absl::StrAppend(&line, "  (x", e.repeats, ")");
    return line.substr(0, 160);
  }

  struct CgroupSeen {
    std::unique_ptr<neonvm::launcher::HostCgroup> cgroup;
    int64_t ns = 0;
    absl::Time at = absl::InfinitePast();
  };
  // By path; only the dashboard's thread uses it.
  std::map<std::string, CgroupSeen> cgroups_;
  Cluster& cluster_;
  const absl::Time start_;
  const bool tty_;
  std::atomic<bool> stop_{false};
  std::map<std::string, uint64_t> since_;
  absl::Time last_table_ = absl::InfinitePast();
  absl::Mutex mu_;
  std::string scene_ ABSL_GUARDED_BY(mu_);
  std::deque<LoggedEvent> all_ ABSL_GUARDED_BY(mu_);
};

struct Step {
  std::string name;
  bool seen = false;
  std::string detail;
};

class Demo {
 public:
  Demo(Cluster& cluster, Dashboard& dash, absl::Time deadline)
      : c_(cluster), dash_(dash), deadline_(deadline) {}

  // Waits up to `timeout` (and the demo's deadline) for `done` on the VM's entry on `node`.
  bool WaitVm(const std::string& node, const std::string& vm, absl::Duration timeout,
              const std::function<bool(const api::v1::VmStatus&)>& done) {
    const absl::Time end = std::min(absl::Now() + timeout, deadline_);
    while (!Interrupted() && absl::Now() < end) {
      if (absl::StatusOr<api::v1::AgentStatus> s = c_.AgentStatus(node); s.ok()) {
        if (const api::v1::VmStatus* v = VmStatus(*s, vm); v != nullptr && done(*v)) return true;
      }
      absl::SleepFor(absl::Milliseconds(250));
    }
    return false;
  }
  static std::function<bool(const api::v1::VmStatus&)> MemoryAtLeast(int64_t bytes) {
    return [bytes](const api::v1::VmStatus& v) { return v.current().memory_bytes() >= bytes; };
  }
  static std::function<bool(const api::v1::VmStatus&)> MemoryAtMost(int64_t bytes) {
    return [bytes](const api::v1::VmStatus& v) {
      const int64_t m = v.current().memory_bytes();
      return m > 0 && m <= bytes;
    };
  }
  double Since(absl::Time t) const { return absl::ToDoubleSeconds(absl::Now() - t); }

  void Load(Guest* g, int mib, int threads) {
    if (absl::Status s = g->AddLoad(mib, threads); !s.ok()) {
      std::fprintf(stderr, "demo: starting the load in %s: %s\n", g->name().c_str(),
                   s.ToString().c_str());
    }
  }

  std::vector<Step> Run(Guest* vm1, Guest* vm2) {
    std::vector<Step> steps(5);

    // 1. vm2's load ramps up: each time its usage crosses the monitor's threshold it asks for
    // more, and the goal from its metrics follows. Memory it is: one busy thread brings the goal
    // from CPU to 2 CU at most (a load average of 1 over 0.9 of 1 vCPU per CU), not to 3.
    steps[0].name = "scale-up on memory pressure";
    dash_.SetScene("1/5 scale-up: vm2's load ramps up to 650 MiB");
    absl::Time t = absl::Now();
    Load(vm2, 300, 1);
    bool grown = WaitVm("b", "vm2", absl::Seconds(30), MemoryAtLeast(2 * kCu.memory_bytes));
    if (grown && !Interrupted()) {
      Load(vm2, 350, 0);
      grown = WaitVm("b", "vm2", absl::Seconds(30), MemoryAtLeast(3 * kCu.memory_bytes));
    }
    if (grown) {
      steps[0].seen = true;
      dash_.AwaitEvent("vm2", api::v1::EVENT_KIND_MONITOR_NOTIFIED);
      steps[0].detail = absl::StrFormat(
          "vm2 grew 1 -> 3 CU in %.1f s; upscale requests from its monitor: %d", Since(t),
          dash_.CountEvents("vm2", api::v1::EVENT_KIND_UPSCALE_REQUESTED));
    }
    if (Interrupted()) return steps;

    // 2. The load stops: the monitor approves each step down (shrinking the LFC first).
    steps[1].name = "scale-down when the load drops";
    dash_.SetScene("2/5 scale-down: vm2's load stops");
    const int64_t lfc_before = vm2->LfcBytes().value_or(-1);
    t = absl::Now();
    (void)vm2->StopLoad();
    if (WaitVm("b", "vm2", absl::Seconds(60), MemoryAtMost(kCu.memory_bytes))) {
      steps[1].seen = dash_.AwaitEvent("vm2", api::v1::EVENT_KIND_DOWNSCALE_APPROVED).has_value();
      steps[1].detail = absl::StrFormat(
          "vm2 shrank to 1 CU in %.1f s; monitor approvals: %d; its LFC %s -> %s", Since(t),
          dash_.CountEvents("vm2", api::v1::EVENT_KIND_DOWNSCALE_APPROVED), Mib(lfc_before),
          Mib(vm2->LfcBytes().value_or(-1)));
    }
    if (Interrupted()) return steps;

    // 3. vm1 grows on node a, which then holds more than its watermark: the scheduler orders vm1
    // off it, and the agents move it to node b live, under load.
    steps[2].name = "live migration off a node above its watermark";
    dash_.SetScene("3/5 migration: vm1 grows node a past its watermark");
    t = absl::Now();
    Load(vm1, 300, 1);
    if (WaitVm("b", "vm1", absl::Seconds(90), [](const api::v1::VmStatus&) { return true; })) {
      if (absl::Status s = c_.ReattachGuest("vm1"); !s.ok()) {
        std::fprintf(stderr, "demo: %s\n", s.ToString().c_str());
      }
      std::optional<std::string> moved = dash_.AwaitEvent("vm1", api::v1::EVENT_KIND_MIGRATED_OUT);
      steps[2].seen = moved.has_value();
      steps[2].detail = absl::StrFormat("%.1f s after the load started: %s", Since(t),
                                        moved.value_or("(no event)"));
    }
    if (Interrupted()) return steps;

    // 4. On node b, vm1 wants 3 CU: b has the memory but no CPU left.
    steps[3].name = "partial grant on a full node";
    dash_.SetScene("4/5 partial grant: vm1's load grows on node b, which has no CPU left");
    Load(vm1, 350, 0);
    if (WaitVm("b", "vm1", absl::Seconds(40), MemoryAtLeast(3 * kCu.memory_bytes))) {
      std::optional<std::string> partial =
          dash_.AwaitEvent("vm1", api::v1::EVENT_KIND_PARTIAL_GRANT);
      steps[3].seen = partial.has_value();
      steps[3].detail = partial.value_or("(no partial grant event)");
    }
    if (Interrupted()) return steps;

    // 5. The load stops; the load generator checks every page it wrote (across the migration).
    steps[4].name = "scale-down after the migration, memory intact";
    dash_.SetScene("5/5 scale-down: vm1's load stops");
    t = absl::Now();
    absl::StatusOr<LoadReport> last = vm1->StopLoad();
    const bool verified = last.ok() && last->AllVerified();
    if (WaitVm("b", "vm1", absl::Seconds(60), MemoryAtMost(kCu.memory_bytes))) {
      steps[4].seen = verified;
      steps[4].detail = absl::StrFormat(
          "vm1 shrank to 1 CU in %.1f s; memory %s", Since(t),
          verified ? "verified by the load generators"
                   : "NOT verified: " + (last.ok() ? absl::StrCat(last->started, " started; ",
                                                                  absl::StrJoin(last->lines, "; "))
                                                   : last.status().ToString()));
    }
    return steps;
  }

 private:
  Cluster& c_;
  Dashboard& dash_;
  const absl::Time deadline_;
};

int Main() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  if (std::string why = ClusterMissing(); !why.empty()) {
    std::fprintf(stderr,
                 "demo: cannot run the cluster here: %s\n"
                 "Run scripts/setup (it installs QEMU 10 from bookworm-backports and builds the "
                 "test guest), then scripts/demo.\n",
                 why.c_str());
    return 2;
  }
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::GetFlag(FLAGS_duration) - absl::Seconds(5);

  ClusterOptions options;
  options.bin = *FindBinaries();
  options.compute_unit = kCu;
  options.dir = absl::GetFlag(FLAGS_dir);
  options.verbose = absl::GetFlag(FLAGS_verbose);
  // Node a: 4 CU, migrations start above 3 CU. Node b: 3 CPUs and 2 GiB, never migrates away.
  options.nodes = {{.name = "a", .total = kCu * 4, .watermark = 0.75},
                   {.name = "b", .total = {3000, 2048 * kMiB}, .watermark = 1.0}};
  std::printf("starting the scheduler and the agents of nodes a and b...\n");
  absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Start(options);
  if (!cluster.ok()) {
    std::fprintf(stderr, "demo: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  Cluster& c = **cluster;
  std::printf(
      "mutual TLS between all daemons (scheduler, agents, monitors), with a throwaway CA "
      "in %s/pki\n",
      c.dir().c_str());
  for (const char* node : {"a", "b"}) {
    std::printf("  agent of node %s: http://127.0.0.1:%d/status (and /metrics)\n", node,
                c.AgentHttpPort(node));
  }
  std::printf("booting vm1 on node a and vm2 on node b (QEMU, %s)...\n",
              neonvm::launcher::KvmUsable() ? "KVM" : "TCG: no usable /dev/kvm, emulated");
  absl::StatusOr<std::string> batch = c.Reserve(
      {.name = "batch", .node = "a", .bounds = {2, 2}, .start_cu = 2, .migratable = false});
  absl::StatusOr<Guest*> vm1 = c.AddGuest({.name = "vm1", .node = "a", .bounds = {1, 3}});
  absl::StatusOr<Guest*> vm2 =
      vm1.ok() ? c.AddGuest({.name = "vm2", .node = "b", .bounds = {1, 3}}) : vm1;
  for (const absl::Status& s : {batch.status(), vm1.status(), vm2.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "demo: %s\n", s.ToString().c_str());
      return 1;
    }
  }

  Dashboard dash(c, start);
  std::thread screen([&dash] { dash.Run(); });
  Demo demo(c, dash, deadline);
  dash.SetScene("0/5 waiting for the monitors in the guests");
  for (const auto& [vm, node] : {std::pair{"vm1", "a"}, std::pair{"vm2", "b"}}) {
    demo.WaitVm(node, vm, absl::Seconds(60),
                [](const api::v1::VmStatus& v) { return v.monitor_connected(); });
  }
  std::vector<Step> steps = demo.Run(*vm1, *vm2);
  dash.Stop();
  screen.join();

  std::printf("\nsummary (%.0f s)\n", absl::ToDoubleSeconds(absl::Now() - start));
  int seen = 0;
  for (const Step& s : steps) {
    if (s.name.empty()) continue;
    seen += s.seen;
    std::printf("  [%s] %-46s %s\n", s.seen ? "ok" : "--", s.name.c_str(), s.detail.c_str());
  }
  std::printf("%d of 5 steps seen%s; the cluster's files: %s\n", seen,
              Interrupted() ? " (interrupted)" : "",
              options.dir.empty() ? "removed" : options.dir.c_str());
  std::fflush(stdout);
  return seen == 5 ? 0 : 1;
}

}  // namespace
}  // namespace autoscale::demo

int main(int argc, char** argv) {
  autoscale::InitProgram(argc, argv,
                         "demo [--duration=170s] [--dir=DIR] [--verbose]: the whole autoscaling "
                         "system on this machine, with two QEMU guests");
  return autoscale::demo::Main();
}
