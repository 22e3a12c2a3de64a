// OpenTap against real tap devices and a real bridge, in a network namespace of the test's own
// (made for one thread with unshare, so nothing outside it is touched and it goes with the
// thread).
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "autoscale/testing/skip.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::neonvm::launcher {
namespace {

// Runs `body` on a thread in a new network namespace with a bridge "br0"; returns what went
// wrong setting that up, or "".
std::string InNewNetns(const std::function<void()>& body) {
  std::string error;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (ioctl(sock, SIOCBRADDBR, "br0") != 0) {
      error = std::string("SIOCBRADDBR br0 (bridge module): ") + std::strerror(errno);
      close(sock);
      return;
    }
    close(sock);
    body();
  });
  t.join();
  return error;
}

int Flags(const std::string& name) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  int rc = ioctl(sock, SIOCGIFFLAGS, &ifr);
  close(sock);
  return rc == 0 ? ifr.ifr_flags : -1;
}

// Adding a port that already has a master fails with EBUSY: the tap is on a bridge.
int AttachAgain(const std::string& tap) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq br{};
  strncpy(br.ifr_name, "br0", IFNAMSIZ - 1);
  br.ifr_ifindex = static_cast<int>(if_nametoindex(tap.c_str()));
  int rc = ioctl(sock, SIOCBRADDIF, &br) == 0 ? 0 : errno;
  close(sock);
  return rc;
}

TEST(OpenTap, MakesATapOnTheBridgeThatLivesAsLongAsItsDescriptor) {
  AUTOSCALE_REQUIRE_ROOT();
  std::string error = InNewNetns([] {
    absl::StatusOr<OpenedTap> tap = OpenTap("br0", "tapvm");
    ASSERT_TRUE(tap.ok()) << tap.status();
    EXPECT_EQ(tap->name, "tapvm");
    EXPECT_GE(tap->fd, 0);
    EXPECT_NE(if_nametoindex("tapvm"), 0u);
    EXPECT_TRUE(Flags("tapvm") & IFF_UP);
    EXPECT_EQ(AttachAgain("tapvm"), EBUSY);

    // The name is taken while the first is open.
    absl::StatusOr<OpenedTap> again = OpenTap("br0", "tapvm");
    EXPECT_FALSE(again.ok());
    EXPECT_TRUE(absl::StrContains(again.status().message(), "tap \"tapvm\"")) << again.status();

    // The kernel names one when asked to.
    absl::StatusOr<OpenedTap> unnamed = OpenTap("br0", "");
    ASSERT_TRUE(unnamed.ok()) << unnamed.status();
    EXPECT_TRUE(absl::StartsWith(unnamed->name, "tap")) << unnamed->name;
    EXPECT_NE(unnamed->name, "tapvm");
    close(unnamed->fd);

    close(tap->fd);
    EXPECT_EQ(if_nametoindex("tapvm"), 0u) << "the tap outlived its descriptor";
  });
  ASSERT_EQ(error, "");
}

TEST(OpenTap, NamesAMissingBridgeAndLeavesNoTap) {
  AUTOSCALE_REQUIRE_ROOT();
  std::string error = InNewNetns([] {
    absl::StatusOr<OpenedTap> tap = OpenTap("nobridge", "tapx");
    ASSERT_FALSE(tap.ok());
    EXPECT_TRUE(absl::StrContains(tap.status().message(), "bridge \"nobridge\"")) << tap.status();
    EXPECT_TRUE(absl::StrContains(tap.status().message(), "attaching to the bridge"))
        << tap.status();
    EXPECT_EQ(if_nametoindex("tapx"), 0u);
  });
  ASSERT_EQ(error, "");
}

}  // namespace
}  // namespace autoscale::neonvm::launcher
