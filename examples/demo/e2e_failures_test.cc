// End to end, with real processes and a booted guest, the failure rules: the scheduler killed
// (no growth beyond the last permit; scaling resumes after its restart), the monitor killed (no
// downscale; growth still works), and the agent restarted (no downscale on missing metrics).
#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"

namespace autoscale::demo {
namespace {

using ::autoscale::testing::AwaitStatus;
using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;
using ::autoscale::testing::HasEvent;
using ::autoscale::testing::VmStatus;

constexpr int64_t kCu = 512 * kMiB;

using ::autoscale::api::v1::AgentStatus;

int64_t Memory(const AgentStatus& s) { return testing::CurrentMemory(s, "vm1"); }

// vm1's permit and desired memory; -1 without a permit or without vm1.
int64_t PermitMemory(const AgentStatus& s) {
  const api::v1::VmStatus* vm = VmStatus(s, "vm1");
  return vm != nullptr && vm->has_permit() ? vm->permit().memory_bytes() : -1;
}
int64_t DesiredMemory(const AgentStatus& s) {
  const api::v1::VmStatus* vm = VmStatus(s, "vm1");
  return vm != nullptr ? vm->desired().memory_bytes() : -1;
}

// Checks that `cond` holds for the whole of `period` (polling the agent's status).
void HoldsFor(Cluster& c, absl::Duration period, const char* what,
              const std::function<bool(const AgentStatus&)>& cond) {
  const absl::Time end = absl::Now() + period;
  while (absl::Now() < end) {
    auto s = c.AgentStatus("a");
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(cond(*s)) << what << "; status: " << s->DebugString();
    absl::SleepFor(absl::Milliseconds(300));
  }
}

TEST(EndToEnd, SchedulerMonitorAndAgentFailures) {
  AUTOSCALE_REQUIRE(testing::ClusterMissing());
  ClusterOptions options;
  options.bin = *FindBinaries();
  options.nodes = {{.name = "a", .total = {4000, 4 * kCu}}};
  auto cluster = Cluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Cluster& c = **cluster;
  auto guest = c.AddGuest({.name = "vm1", .node = "a", .bounds = {1, 3}});
  ASSERT_TRUE(guest.ok()) << guest.status();
  auto ready = AwaitStatus(c, "a", absl::Seconds(60), [](const AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, "vm1");
    return vm != nullptr && vm->monitor_connected() && vm->has_load_avg_1m();
  });
  ASSERT_TRUE(ready.ok()) << ready.status();

  // --- The scheduler is killed: the VM wants 2 CU (its minimum is raised) but does not grow
  // beyond its last permit; once the scheduler is back, it grows.
  ASSERT_TRUE(c.KillScheduler().ok());
  ASSERT_TRUE(c.SetBounds("vm1", {2, 3}).ok());
  auto wants = AwaitStatus(c, "a", absl::Seconds(20),
                           [](const AgentStatus& s) { return DesiredMemory(s) == 2 * kCu; });
  ASSERT_TRUE(wants.ok()) << wants.status();
  HoldsFor(c, absl::Seconds(8), "no growth beyond the last permit",
           [](const AgentStatus& s) { return Memory(s) == kCu && PermitMemory(s) == kCu; });
  ASSERT_TRUE(c.StartScheduler().ok());
  auto resumed = AwaitStatus(c, "a", absl::Seconds(60),
                             [](const AgentStatus& s) { return Memory(s) == 2 * kCu; });
  ASSERT_TRUE(resumed.ok()) << "scaling did not resume after the scheduler's restart: "
                            << resumed.status();
  EXPECT_TRUE(HasEvent(*resumed, "vm1", api::v1::EVENT_KIND_SCHEDULER_REQUEST_FAILED));

  // --- The monitor is killed: lowering the bounds asks for a downscale, which does not happen;
  // raising them still grows the VM.
  ASSERT_TRUE((*guest)->KillMonitor().ok());
  auto gone = AwaitStatus(c, "a", absl::Seconds(60), [](const AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, "vm1");
    return vm != nullptr && !vm->monitor_connected();
  });
  ASSERT_TRUE(gone.ok()) << gone.status();
  ASSERT_TRUE(c.SetBounds("vm1", {1, 3}).ok());
  HoldsFor(c, absl::Seconds(8), "no downscale without the monitor",
           [](const AgentStatus& s) { return Memory(s) == 2 * kCu; });
  ASSERT_TRUE(c.SetBounds("vm1", {3, 3}).ok());
  auto grew = AwaitStatus(c, "a", absl::Seconds(60),
                          [](const AgentStatus& s) { return Memory(s) == 3 * kCu; });
  ASSERT_TRUE(grew.ok()) << "growth without the monitor: " << grew.status();
  auto mem = (*guest)->MemTotalBytes();
  ASSERT_TRUE(mem.ok());
  EXPECT_GT(*mem, 2 * kCu) << "the memory is online in the guest";

  // --- The agent restarts with the monitor still down: it has no metrics, so it keeps the VM's
  // size (the LFC is not flushed), even though the bounds now allow 1 CU.
  ASSERT_TRUE(c.SetBounds("vm1", {1, 3}).ok());
  ASSERT_TRUE(c.KillAgent("a").ok());
  ASSERT_TRUE(c.StartAgent("a").ok());
  auto back = AwaitStatus(c, "a", absl::Seconds(30), [](const AgentStatus& s) {
    return VmStatus(s, "vm1") != nullptr && Memory(s) > 0;
  });
  ASSERT_TRUE(back.ok()) << back.status();
  HoldsFor(c, absl::Seconds(6), "no downscale on missing metrics", [](const AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, "vm1");
    return Memory(s) == 3 * kCu && DesiredMemory(s) == 3 * kCu &&
           vm->decided_by() == "currentUsage";
  });
  // With the monitor back, metrics arrive, it approves, and the idle VM shrinks.
  ASSERT_TRUE((*guest)->StartMonitor().ok());
  auto shrunk =
      AwaitStatus(c, "a", absl::Seconds(90), [](const AgentStatus& s) { return Memory(s) == kCu; });
  ASSERT_TRUE(shrunk.ok()) << shrunk.status();
}

}  // namespace
}  // namespace autoscale::demo
