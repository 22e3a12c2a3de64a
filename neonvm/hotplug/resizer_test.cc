// The resizer against real QEMU without a guest (paused): CPU hot-add, refusals, idempotence, and
// what cannot work without a guest (CPU removal, memory plugging, CPU acknowledgement) failing
// with clear errors instead of hanging.
#include "neonvm/hotplug/resizer.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"

namespace autoscale::neonvm::hotplug {
namespace {

using launcher::Vm;

class ResizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_QEMU();
    auto vm = Vm::Start(testing::NoGuestSpec("resize"));
    ASSERT_TRUE(vm.ok()) << vm.status();
    vm_ = std::move(*vm);
  }

  VmResizer NoGuestResizer(absl::Duration timeout = absl::Seconds(10)) {
    VmResizerOptions o;
    o.guest_acknowledges_cpus = false;
    o.timeout = timeout;
    return VmResizer(vm_->qmp(), vm_->spec(), o);
  }

  std::string Cpus() { return *vm_->qmp().Execute("query-hotpluggable-cpus"); }

  std::unique_ptr<Vm> vm_;
};

TEST_F(ResizerTest, ReportsTheCurrentSize) {
  VmResizer r = NoGuestResizer();
  auto now = r.Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, (VmSize{1, 256 * kMiB}));
  EXPECT_EQ(ToString(*now), "1 CPU, 256 MiB");
}

TEST_F(ResizerTest, AddsCpusIntoTheLowestFreeCores) {
  VmResizer r = NoGuestResizer();
  auto reached = r.Resize({3, 256 * kMiB});
  ASSERT_TRUE(reached.ok()) << reached.status();
  EXPECT_EQ(*reached, (VmSize{3, 256 * kMiB}));
  EXPECT_EQ(r.Current()->cpus, 3);
  std::string cpus = Cpus();
  EXPECT_TRUE(absl::StrContains(cpus, R"("qom-path":"/machine/peripheral/cpu1")")) << cpus;
  EXPECT_TRUE(absl::StrContains(cpus, R"("qom-path":"/machine/peripheral/cpu2")")) << cpus;
  EXPECT_FALSE(absl::StrContains(cpus, "/machine/peripheral/cpu3")) << cpus;
}

TEST_F(ResizerTest, IsIdempotent) {
  VmResizer r = NoGuestResizer();
  ASSERT_TRUE(r.Resize({2, 256 * kMiB}).ok());
  std::string before = Cpus();
  qmp::EventQueue events(vm_->qmp());
  auto again = r.Resize({2, 256 * kMiB});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, (VmSize{2, 256 * kMiB}));
  EXPECT_EQ(Cpus(), before);
  // No device was added or removed: QEMU reported nothing.
  EXPECT_EQ(events.Next(absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ResizerTest, RefusesTargetsOutsideTheSpecOrNotWholeSlots) {
  VmResizer r = NoGuestResizer();
  struct Case {
    VmSize target;
    const char* why;
  };
  const Case cases[] = {
      {{0, 256 * kMiB}, "0 CPUs is outside the spec's 1..4"},
      {{5, 256 * kMiB}, "5 CPUs is outside the spec's 1..4"},
      {{1, 300 * kMiB}, "not a whole number of 256 MiB slots"},
      {{1, 0}, "memory is outside the spec's 256 MiB..1 GiB"},
      {{1, 2048 * kMiB}, "memory is outside the spec's 256 MiB..1 GiB"},
  };
  std::string before = Cpus();
  for (const Case& c : cases) {
    auto reached = r.Resize(c.target);
    EXPECT_EQ(reached.status().code(), absl::StatusCode::kInvalidArgument) << ToString(c.target);
    EXPECT_TRUE(absl::StrContains(reached.status().message(), c.why)) << reached.status();
    EXPECT_TRUE(absl::StrContains(reached.status().message(), "resizing VM resize to"))
        << reached.status();
  }
  EXPECT_EQ(Cpus(), before);
}

TEST_F(ResizerTest, CpuRemovalNeedsAGuest) {
  VmResizer r = NoGuestResizer();
  ASSERT_TRUE(r.Resize({2, 256 * kMiB}).ok());
  auto reached = r.Resize({1, 256 * kMiB});
  // Without a guest OS, QEMU's ACPI is in legacy mode and refuses CPU unplug.
  EXPECT_EQ(reached.status().code(), absl::StatusCode::kFailedPrecondition) << reached.status();
  EXPECT_TRUE(absl::StrContains(reached.status().message(), "qmp device_del cpu1"))
      << reached.status();
  EXPECT_TRUE(absl::StrContains(reached.status().message(), "(now 2 CPUs, 256 MiB)"))
      << reached.status();
}

// The quota callback sees the vCPUs already plugged when growing, and still plugged when
// shrinking: QEMU never has more CPU time than the smaller size allows.
TEST_F(ResizerTest, RaisesTheCpuLimitAfterPluggingAndLowersItBeforeUnplugging) {
  struct Call {
    int milli;
    int plugged;
  };
  std::vector<Call> calls;
  VmResizerOptions o;
  o.guest_acknowledges_cpus = false;
  o.set_cpu_limit = [&](int milli) {
    std::string cpus = Cpus();
    int plugged = 0;
    for (size_t pos = 0; (pos = cpus.find("\"qom-path\"", pos)) != std::string::npos; ++pos) {
      ++plugged;
    }
    calls.push_back({milli, plugged});
    return absl::OkStatus();
  };
  VmResizer r(vm_->qmp(), vm_->spec(), o);

  ASSERT_TRUE(r.Resize({3, 256 * kMiB}, 2500).ok());
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].milli, 2500);
  EXPECT_EQ(calls[0].plugged, 3);

  ASSERT_TRUE(r.Resize({3, 256 * kMiB}, 2250).ok());  // the same vCPUs: only the quota
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].milli, 2250);

  // Without a guest the unplug fails, but the quota was already lowered.
  auto shrunk = r.Resize({2, 256 * kMiB});
  EXPECT_EQ(shrunk.status().code(), absl::StatusCode::kFailedPrecondition) << shrunk.status();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[2].milli, 2000);
  EXPECT_EQ(calls[2].plugged, 3);

  // A quota that does not fit the vCPUs is refused before anything changes.
  for (int milli : {2000, 3001, 0}) {
    EXPECT_EQ(r.Resize({3, 256 * kMiB}, milli).status().code(), absl::StatusCode::kInvalidArgument)
        << milli;
  }
  EXPECT_EQ(calls.size(), 3u);
}

TEST_F(ResizerTest, ACpuLimitErrorFailsTheResize) {
  VmResizerOptions o;
  o.guest_acknowledges_cpus = false;
  o.set_cpu_limit = [](int) { return absl::FailedPreconditionError("no cgroup"); };
  VmResizer r(vm_->qmp(), vm_->spec(), o);
  auto reached = r.Resize({2, 256 * kMiB});
  EXPECT_EQ(reached.status().code(), absl::StatusCode::kFailedPrecondition) << reached.status();
  EXPECT_TRUE(absl::StrContains(reached.status().message(), "no cgroup")) << reached.status();
  // Growing: the vCPU was plugged first, and stays (the old, lower quota still holds).
  EXPECT_EQ(r.Current()->cpus, 2);
}

TEST_F(ResizerTest, MemoryWithoutAGuestDriverTimesOutWithWhatItReached) {
  VmResizer r = NoGuestResizer(absl::Milliseconds(300));
  auto reached = r.Resize({1, 768 * kMiB});
  EXPECT_EQ(reached.status().code(), absl::StatusCode::kDeadlineExceeded) << reached.status();
  EXPECT_TRUE(
      absl::StrContains(reached.status().message(), "has 0 bytes plugged of 512 MiB requested"))
      << reached.status();
  // The request is taken back to what is plugged: a guest driver that comes late must not plug
  // memory the caller was told the VM does not have (and the ledger does not book).
  auto requested = vm_->qmp().Execute(
      "qom-get", R"({"path":"/machine/peripheral/vm0","property":"requested-size"})");
  ASSERT_TRUE(requested.ok());
  EXPECT_EQ(*requested, "0");
  auto now = r.Current();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->memory_bytes, 256 * kMiB);
}

TEST_F(ResizerTest, WaitingForAGuestThatIsNotThereTimesOut) {
  VmResizerOptions o;
  o.timeout = absl::Milliseconds(300);
  VmResizer r(vm_->qmp(), vm_->spec(), o);
  auto reached = r.Resize({2, 256 * kMiB});
  EXPECT_EQ(reached.status().code(), absl::StatusCode::kDeadlineExceeded) << reached.status();
  EXPECT_TRUE(absl::StrContains(reached.status().message(),
                                "cpu1 is plugged, but the guest did not acknowledge it"))
      << reached.status();
}

}  // namespace
}  // namespace autoscale::neonvm::hotplug
