// The resizer with the booted test guest: added CPUs come online in the guest, removed CPUs are
// ejected and gone, CPUs can be added again after a removal, and virtio-mem memory grows and
// shrinks in the guest's MemTotal. One guest serves the whole suite, in order.
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/hotplug/resizer.h"

namespace autoscale::neonvm::hotplug {
namespace {

class ResizerGuestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::GuestMissing().empty()) return;
    auto spec = testing::GuestSpec("resize-guest");
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto booted = testing::Boot(*spec);
    ASSERT_TRUE(booted.ok()) << booted.status();
    booted_ = new testing::BootedVm(std::move(*booted));
  }
  static void TearDownTestSuite() {
    delete booted_;
    booted_ = nullptr;
  }
  void SetUp() override {
    AUTOSCALE_REQUIRE_GUEST();
    ASSERT_NE(booted_, nullptr) << "the guest did not boot";
    resizer_ = std::make_unique<VmResizer>(booted_->vm->qmp(), booted_->vm->spec());
  }

  std::string WaitForGuest(const std::string& command, const std::string& want) {
    return testing::WaitForGuest(*booted_->console, command, want);
  }

  int64_t MemTotalKib() {
    auto out = booted_->console->Run(testing::kMemTotalKibCommand);
    int64_t kib = -1;
    if (!out.ok() || !absl::SimpleAtoi(*out, &kib)) ADD_FAILURE() << out.status();
    return kib;
  }

  static testing::BootedVm* booted_;
  std::unique_ptr<VmResizer> resizer_;
};

testing::BootedVm* ResizerGuestTest::booted_ = nullptr;

TEST_F(ResizerGuestTest, AddedCpusComeOnlineInTheGuest) {
  auto reached = resizer_->Resize({3, 256 * kMiB});
  ASSERT_TRUE(reached.ok()) << reached.status();
  EXPECT_EQ(*reached, (VmSize{3, 256 * kMiB}));
  EXPECT_EQ(WaitForGuest("nproc", "3"), "3");
  EXPECT_EQ(WaitForGuest("cat /sys/devices/system/cpu/online", "0-2"), "0-2");
}

TEST_F(ResizerGuestTest, RemovedCpusAreEjectedAndGone) {
  ASSERT_TRUE(resizer_->Resize({3, 256 * kMiB}).ok());
  auto reached = resizer_->Resize({1, 256 * kMiB});
  ASSERT_TRUE(reached.ok()) << reached.status();
  EXPECT_EQ(resizer_->Current()->cpus, 1);
  std::string cpus = *booted_->vm->qmp().Execute("query-hotpluggable-cpus");
  EXPECT_EQ(cpus.find("/machine/peripheral/"), std::string::npos) << cpus;
  EXPECT_EQ(WaitForGuest("nproc", "1"), "1");
  EXPECT_EQ(WaitForGuest("ls -d /sys/devices/system/cpu/cpu[0-9]*", "/sys/devices/system/cpu/cpu0"),
            "/sys/devices/system/cpu/cpu0");
}

TEST_F(ResizerGuestTest, CpusCanBeAddedAgainAfterARemoval) {
  ASSERT_TRUE(resizer_->Resize({1, 256 * kMiB}).ok());
  auto reached = resizer_->Resize({2, 256 * kMiB});
  ASSERT_TRUE(reached.ok()) << reached.status();
  EXPECT_EQ(WaitForGuest("nproc", "2"), "2");
  ASSERT_TRUE(resizer_->Resize({1, 256 * kMiB}).ok());
  EXPECT_EQ(WaitForGuest("nproc", "1"), "1");
}

TEST_F(ResizerGuestTest, MemoryGrowsAndShrinksInMemTotal) {
  int64_t base = MemTotalKib();
  auto grown = resizer_->Resize({1, 768 * kMiB});
  ASSERT_TRUE(grown.ok()) << grown.status();
  EXPECT_EQ(resizer_->Current()->memory_bytes, 768 * kMiB);
  // virtio-mem onlines exactly what it plugs: MemTotal grows by the 512 MiB.
  std::string want = absl::StrCat(base + 512 * 1024);
  EXPECT_EQ(WaitForGuest(testing::kMemTotalKibCommand, want), want);

  auto shrunk = resizer_->Resize({1, 512 * kMiB});
  ASSERT_TRUE(shrunk.ok()) << shrunk.status();
  want = absl::StrCat(base + 256 * 1024);
  EXPECT_EQ(WaitForGuest(testing::kMemTotalKibCommand, want), want);

  ASSERT_TRUE(resizer_->Resize({1, 256 * kMiB}).ok());
  want = absl::StrCat(base);
  EXPECT_EQ(WaitForGuest(testing::kMemTotalKibCommand, want), want);
}

// By now this QEMU has created more vCPUs than the spec's 4 (QEMU 10 under TCG aborts at its
// maxcpus; the launcher leaves room for that).
TEST_F(ResizerGuestTest, ResizesCpusAndMemoryTogether) {
  auto up = resizer_->Resize({4, 1024 * kMiB});
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(*resizer_->Current(), (VmSize{4, 1024 * kMiB}));
  EXPECT_EQ(WaitForGuest("nproc", "4"), "4");
  auto down = resizer_->Resize({1, 256 * kMiB});
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(*resizer_->Current(), (VmSize{1, 256 * kMiB}));
  EXPECT_EQ(WaitForGuest("nproc", "1"), "1");
}

}  // namespace
}  // namespace autoscale::neonvm::hotplug
