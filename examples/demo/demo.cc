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
// With --postgres, the story of a database compute instead: the PostgreSQL guest on host A (network
// namespaces made by the demo, the guest with its own address on a tap), pgbench from a client
// namespace, and the table gains pgbench's TPS and latency:
//
//   1. scale-up under pgbench            the load average calls for 2 CU: a vCPU is hot-plugged
//   2. live migration to host B          the grant puts node a above its watermark
//   3. pgbench through it all            every client on its first connection, no failure
//   4. scale-down when pgbench stops     the load average decays
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
#include "autoscale/testing/hosts_network.h"
#include "autoscale/testing/pgbench.h"
#include "autoscale/testing/vm.h"
#include "neonvm/launcher/vm.h"

ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "How long the whole demo may take, boot and summary included; 0: 170s (240s with "
          "--postgres).");
ABSL_FLAG(bool, postgres, false,
          "The PostgreSQL story: pgbench against a PostgreSQL guest that scales up, migrates to "
          "another host (network namespaces) and scales down.");
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
  // Adds pgbench's last second (TPS, latency) to the rows of `vm`; null: no such columns.
  void ShowPgbench(testing::Pgbench* bench, const std::string& vm) {
    absl::MutexLock lock(&mu_);
    bench_ = bench;
    bench_vm_ = vm;
  }

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
    testing::Pgbench* bench;
    std::string bench_vm;
    {
      absl::MutexLock lock(&mu_);
      bench = bench_;
      bench_vm = bench_vm_;
    }
    // pgbench's last progress line: "TPS LAT" columns for its VM.
    std::string bench_cols = "-";
    if (bench != nullptr) {
      std::vector<testing::PgbenchProgress> p = bench->Progress();
      if (!p.empty()) {
        bench_cols = absl::StrFormat("%5.1f %7.1f", p.back().tps, p.back().latency_ms);
      }
    }
    auto with_bench = [&](std::string row, const std::string& cols) {
      if (bench == nullptr) return row;
      return absl::StrFormat("%-13s %s", cols, row);
    };
    std::vector<std::string> rows;
    rows.push_back(
        with_bench(absl::StrFormat("%-6s %-4s %5s %9s %4s  %-18s %-6s %-6s %-18s %-18s %s", "VM",
                                   "NODE", "LOAD", "MEM USED", "GOAL", "PERMIT", "QUOTA", "CPU",
                                   "AGENT: VM HAS", "QEMU REPORTS", "STATE"),
                   "  TPS  LAT ms"));
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
        rows.push_back(with_bench(
            absl::StrFormat("%-6s %-4s %5s %9s %4d  %-18s %-6s %-6s %-18s %-18s %s", vm.vm(),
                            n.name,
                            vm.has_load_avg_1m() ? absl::StrFormat("%.2f", vm.load_avg_1m()) : "-",
                            vm.has_memory_usage_bytes() ? Mib(vm.memory_usage_bytes()) : "-",
                            vm.goal_cu(), Res(vm.has_permit(), vm.permit()), cpu.quota, cpu.used,
                            Res(vm.current()), Res(vm.has_observed(), vm.observed()), state),
            vm.vm() == bench_vm ? bench_cols : "-"));
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
        rows.push_back(
            with_bench(absl::StrFormat("%-6s %-4s %5s %9s %4s  %-18s %-6s %-6s %-18s %-18s %s",
                                       v.vm(), v.node(), "-", "-", "-", Res(v.permit()), "-", "-",
                                       "-", "-", "reserved in the ledger only (no guest)"),
                       "-"));
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
  testing::Pgbench* bench_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string bench_vm_ ABSL_GUARDED_BY(mu_);
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

// Prints the summary; 0 when every step was seen.
int Summary(const std::vector<Step>& steps, absl::Time start, const std::string& dir) {
  std::printf("\nsummary (%.0f s)\n", absl::ToDoubleSeconds(absl::Now() - start));
  int seen = 0;
  for (const Step& s : steps) {
    if (s.name.empty()) continue;
    seen += s.seen;
    std::printf("  [%s] %-46s %s\n", s.seen ? "ok" : "--", s.name.c_str(), s.detail.c_str());
  }
  std::printf("%d of %d steps seen%s; the cluster's files: %s\n", seen,
              static_cast<int>(steps.size()), Interrupted() ? " (interrupted)" : "",
              dir.empty() ? "removed" : dir.c_str());
  std::fflush(stdout);
  return seen == static_cast<int>(steps.size()) ? 0 : 1;
}

constexpr char kPgVm[] = "pg";
constexpr char kPgAddress[] = "10.77.0.50";

// The VM's entry on whichever node has it.
const api::v1::VmStatus* FindVm(Cluster& c, const std::string& vm, api::v1::AgentStatus& buf) {
  for (const NodeOptions& n : c.options().nodes) {
    absl::StatusOr<api::v1::AgentStatus> s = c.AgentStatus(n.name);
    if (!s.ok()) continue;
    buf = *std::move(s);
    if (const api::v1::VmStatus* v = VmStatus(buf, vm)) return v;
  }
  return nullptr;
}

// The PostgreSQL story (--postgres).
int PostgresMain(absl::Time start, absl::Time deadline) {
  for (const std::string& why : {testing::PostgresGuestMissing(), testing::HostsNetworkMissing(),
                                 testing::PgbenchMissing()}) {
    if (!why.empty()) {
      std::fprintf(stderr,
                   "demo: cannot run the PostgreSQL story here: %s\n"
                   "It needs root (network namespaces), pgbench, and the PostgreSQL guest: "
                   "neonvm/guest/build --postgres.\n",
                   why.c_str());
      return 2;
    }
  }
  std::printf("making two hosts and a client (network namespaces on one L2 segment)...\n");
  absl::StatusOr<std::unique_ptr<testing::HostsNetwork>> net = testing::HostsNetwork::Create();
  if (!net.ok()) {
    std::fprintf(stderr, "demo: %s\n", net.status().ToString().c_str());
    return 1;
  }
  ClusterOptions options;
  options.bin = *FindBinaries();
  options.compute_unit = kCu;
  options.dir = absl::GetFlag(FLAGS_dir);
  options.verbose = absl::GetFlag(FLAGS_verbose);
  options.hosts = net->get();
  // Node a migrates above 2 CU: the VM at 1 CU and a reserved 1-CU VM fit, the VM at 2 CU does
  // not. Node b has room.
  options.nodes = {{.name = "a", .total = kCu * 4, .watermark = 0.5},
                   {.name = "b", .total = kCu * 4, .watermark = 1.0}};
  std::printf("starting the scheduler and the agents of nodes a and b (on hosts %s and %s)...\n",
              (*net)->host(0).address.c_str(), (*net)->host(1).address.c_str());
  absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Start(options);
  if (!cluster.ok()) {
    std::fprintf(stderr, "demo: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  Cluster& c = **cluster;
  std::printf("booting the PostgreSQL guest %s on node a at %s (QEMU, %s)...\n", kPgVm, kPgAddress,
              neonvm::launcher::KvmUsable() ? "KVM" : "TCG: no usable /dev/kvm, emulated");
  absl::StatusOr<std::string> other =
      c.Reserve({.name = "other", .node = "a", .bounds = {1, 1}, .migratable = false});
  absl::StatusOr<Guest*> pg = c.AddGuest(
      {.name = kPgVm, .node = "a", .bounds = {1, 2}, .postgres = true, .address = kPgAddress});
  for (const absl::Status& s : {other.status(), pg.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "demo: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("PostgreSQL accepting connections %.1f s after QEMU started\n",
              absl::ToDoubleSeconds((*pg)->boot_time()));

  Dashboard dash(c, start);
  std::thread screen([&dash] { dash.Run(); });
  Demo demo(c, dash, deadline);
  std::vector<Step> steps(4);
  steps[0].name = "scale-up under pgbench";
  steps[1].name = "live migration to host B";
  steps[2].name = "pgbench through it all";
  steps[3].name = "scale-down when pgbench stops";
  auto finish = [&] {
    dash.ShowPgbench(nullptr, "");
    dash.Stop();
    screen.join();
    return Summary(steps, start, options.dir);
  };

  dash.SetScene("0/4 waiting for the monitor; pgbench -i from the client namespace");
  demo.WaitVm("a", kPgVm, absl::Seconds(60),
              [](const api::v1::VmStatus& v) { return v.monitor_connected(); });
  testing::PgbenchOptions bench_options{
      .host = kPgAddress, .netns = "/run/netns/" + (*net)->client_netns(), .dir = c.dir()};
  // At most until the demo's deadline; ended (as -T would) after the migration.
  bench_options.duration = std::max(absl::Seconds(10), deadline - absl::Now() - absl::Seconds(60));
  if (absl::Status s = testing::PgbenchInit(bench_options, absl::Seconds(60)); !s.ok()) {
    std::fprintf(stderr, "demo: %s\n", s.ToString().c_str());
    return finish();
  }
  absl::StatusOr<std::unique_ptr<testing::Pgbench>> bench = testing::Pgbench::Start(bench_options);
  if (!bench.ok()) {
    std::fprintf(stderr, "demo: %s\n", bench.status().ToString().c_str());
    return finish();
  }
  dash.ShowPgbench(bench->get(), kPgVm);

  // 1. The load average rises until the goal is 2 CU.
  dash.SetScene(absl::StrCat("1/4 scale-up: pgbench -c 4 from the client against ", kPgAddress));
  const absl::Time t = absl::Now();
  while (!Interrupted() && absl::Now() < deadline && (*bench)->Running()) {
    api::v1::AgentStatus buf;
    const api::v1::VmStatus* v = FindVm(c, kPgVm, buf);
    if (v != nullptr && v->current().milli_cpu() >= 2000) {
      steps[0].seen = true;
      steps[0].detail = absl::StrFormat("%.1f s into pgbench, at a load average of %.2f",
                                        demo.Since(t), v->load_avg_1m());
      break;
    }
    absl::SleepFor(absl::Milliseconds(250));
  }

  // 2. Node a is above its watermark now: the agents move the VM to host B.
  dash.SetScene("2/4 migration: node a is above its watermark; pgbench keeps running");
  if (steps[0].seen) {
    std::optional<std::string> moved =
        dash.AwaitEvent(kPgVm, api::v1::EVENT_KIND_MIGRATED_OUT,
                        std::min(absl::Seconds(90), deadline - absl::Now()));
    if (moved.has_value()) {
      steps[1].seen = true;
      steps[1].detail = *moved;
      (void)c.ReattachGuest(kPgVm);
      // Some load on host B, at 2 CU.
      dash.SetScene("2/4 migration done: pgbench goes on against the VM on host B");
      for (const absl::Time end = absl::Now() + absl::Seconds(8);
           absl::Now() < end && !Interrupted();) {
        absl::SleepFor(absl::Milliseconds(200));
      }
    }
  }

  // 3. pgbench ends: its totals and the longest gap between transactions.
  (*bench)->Finish();
  absl::StatusOr<testing::PgbenchResult> result = (*bench)->Wait(absl::Seconds(30));
  dash.ShowPgbench(nullptr, "");
  if (!result.ok()) {
    steps[2].detail = result.status().ToString();
  } else {
    steps[2].seen = result->exit_code == 0 && result->failed == 0 && result->aborted_clients == 0 &&
                    result->transactions > 0 && steps[1].seen;
    steps[2].detail = absl::StrFormat(
        "%d transactions, %d failed transactions, %d clients aborted; longest gap between "
        "transactions %.0f ms",
        result->transactions, result->failed, result->aborted_clients,
        absl::ToDoubleMilliseconds(result->longest_gap));
  }

  // 4. The load average decays: 1 CU again on node b.
  dash.SetScene("4/4 scale-down: pgbench stopped; the load average decays");
  const absl::Time stopped = absl::Now();
  if (demo.WaitVm("b", kPgVm, absl::Seconds(120),
                  [](const api::v1::VmStatus& v) { return v.current().milli_cpu() == 1000; })) {
    steps[3].seen = true;
    steps[3].detail =
        absl::StrFormat("1 CU on node b %.1f s after pgbench stopped", demo.Since(stopped));
  }
  return finish();
}

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
  const bool postgres = absl::GetFlag(FLAGS_postgres);
  absl::Duration duration = absl::GetFlag(FLAGS_duration);
  if (duration <= absl::ZeroDuration()) duration = absl::Seconds(postgres ? 240 : 170);
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + duration - absl::Seconds(5);
  if (postgres) return PostgresMain(start, deadline);

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

  return Summary(steps, start, options.dir);
}

}  // namespace
}  // namespace autoscale::demo

int main(int argc, char** argv) {
  autoscale::InitProgram(argc, argv,
                         "demo [--postgres] [--duration=170s] [--dir=DIR] [--verbose]: the whole "
                         "autoscaling system on this machine, with two QEMU guests (or the "
                         "PostgreSQL story)");
  return autoscale::demo::Main();
}
