// End to end, with real processes and a booted guest: memory pressure in the guest brings more
// memory online (and how fast), and when the load drops the monitor approves a downscale after
// shrinking the LFC.
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cluster.h"
#include "autoscale/testing/cluster_status.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"

namespace autoscale::demo {
namespace {

using ::autoscale::api::v1::AgentStatus;
using ::autoscale::testing::AwaitStatus;
using ::autoscale::testing::Cluster;
using ::autoscale::testing::ClusterOptions;
using ::autoscale::testing::FindBinaries;
using ::autoscale::testing::Guest;
using ::autoscale::testing::HasEvent;
using ::autoscale::testing::ReactionMs;
using ::autoscale::testing::VmStatus;

TEST(EndToEnd, MemoryPressureGrowsTheVmAndAnIdleVmShrinksLfcFirst) {
  AUTOSCALE_REQUIRE(testing::ClusterMissing());
  ClusterOptions options;
  options.bin = *FindBinaries();
  options.nodes = {{.name = "a", .total = {4000, 2048 * kMiB}}};
  // Leave memory growth to the monitor's threshold (the goal from metrics would grow the VM as
  // memstep fills memory, before the crossing this test times).
  options.scaling.set_memory_usage_fraction_target(0.99);
  auto cluster = Cluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto guest = (*cluster)->AddGuest({.name = "vm1", .node = "a", .bounds = {1, 3}});
  ASSERT_TRUE(guest.ok()) << guest.status();
  Cluster& c = **cluster;
  Guest& g = **guest;

  // The agent took the VM over and its monitor streams metrics, and the VM is at 1 CU (512 MiB):
  // the boot's load under TCG can grow it for a while, and a shrink after the reading below
  // would hide the growth this test is about.
  auto ready = AwaitStatus(c, "a", absl::Seconds(60), [](const AgentStatus& s) {
    const api::v1::VmStatus* vm = VmStatus(s, "vm1");
    return vm != nullptr && vm->monitor_connected() && vm->has_load_avg_1m() &&
           testing::CurrentMemory(s, "vm1") == 512 * kMiB;
  });
  if (!ready.ok()) {
    auto diag = g.Run("cat /var/log/boot.log /var/log/monitor.log; ps");
    FAIL() << ready.status() << "\nguest: " << (diag.ok() ? *diag : diag.status().ToString());
  }
  auto before = g.MemTotalBytes();
  ASSERT_TRUE(before.ok()) << before.status();

  // Pressure: cross the monitor's threshold at 1 CU (512 MiB).
  auto line = g.MeasureReaction();
  ASSERT_TRUE(line.ok()) << line.status();
  std::optional<double> ms = ReactionMs(*line);
  ASSERT_TRUE(ms.has_value()) << *line;
  ::testing::Test::RecordProperty("reaction_ms", std::to_string(*ms));
  std::printf("threshold crossing to memory online in the guest: %.1f ms\n", *ms);
  auto after = g.MemTotalBytes();
  ASSERT_TRUE(after.ok());
  EXPECT_GE(*after, *before + 512 * kMiB) << "one more CU of memory is online";
  auto grown = AwaitStatus(c, "a", absl::Seconds(30), [](const AgentStatus& s) {
    return testing::CurrentMemory(s, "vm1") >= 1024 * kMiB &&
           HasEvent(s, "vm1", api::v1::EVENT_KIND_UPSCALE_REQUESTED) &&
           HasEvent(s, "vm1", api::v1::EVENT_KIND_MONITOR_NOTIFIED);
  });
  ASSERT_TRUE(grown.ok()) << grown.status();
  EXPECT_TRUE(HasEvent(*grown, "vm1", api::v1::EVENT_KIND_PERMIT))
      << "the scheduler was asked first";
  const int64_t lfc_big = *g.LfcBytes();

  // The load is gone: the monitor approves a downscale, shrinking the LFC first, and the VM
  // shrinks back to its minimum.
  auto shrunk = AwaitStatus(c, "a", absl::Seconds(90), [](const AgentStatus& s) {
    return testing::CurrentMemory(s, "vm1") == 512 * kMiB;
  });
  ASSERT_TRUE(shrunk.ok()) << shrunk.status();
  EXPECT_TRUE(HasEvent(*shrunk, "vm1", api::v1::EVENT_KIND_DOWNSCALE_APPROVED));
  auto lfc_small = g.LfcBytes();
  ASSERT_TRUE(lfc_small.ok());
  EXPECT_LT(*lfc_small, lfc_big) << "the LFC follows the memory down";
  // In the monitor's log, the LFC shrink comes before the approval.
  auto log = g.MonitorLog();
  ASSERT_TRUE(log.ok());
  size_t approved = log->find("downscale to 512 MiB approved");
  ASSERT_NE(approved, std::string::npos) << *log;
  size_t lfc_set = log->rfind("LFC size set to", approved);
  EXPECT_NE(lfc_set, std::string::npos) << "the LFC was resized before the approval:\n" << *log;
  auto mem = g.MemTotalBytes();
  ASSERT_TRUE(mem.ok());
  EXPECT_LT(*mem, *after) << "the guest's memory went back down";
}

}  // namespace
}  // namespace autoscale::demo
