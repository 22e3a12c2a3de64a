#include "autoscale/base/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace autoscale {
namespace {

class SdNotifyTest : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("NOTIFY_SOCKET"); }
};

TEST_F(SdNotifyTest, WithoutTheVariableItDoesNothing) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(NotifyReady().ok());
}

TEST_F(SdNotifyTest, SendsTheStateToThePathAndToAnAbstractName) {
  // A short path: TEST_TMPDIR may be longer than a socket address holds.
  for (const std::string& name :
       {"/tmp/autoscale-sd-notify-test-" + std::to_string(getpid()),
        std::string("@autoscale-sd-notify-test-") + std::to_string(getpid())}) {
    const int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    name.copy(addr.sun_path, name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())),
              0)
        << name;
    setenv("NOTIFY_SOCKET", name.c_str(), 1);
    ASSERT_TRUE(NotifyReady().ok()) << name;
    char buf[64] = {};
    const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "READY=1") << name;
    close(fd);
    if (name[0] == '/') unlink(name.c_str());
  }
}

TEST_F(SdNotifyTest, ABadVariableIsAnErrorNamingIt) {
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  absl::Status s = NotifyReady();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("relative/path"), std::string::npos) << s;
  setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock", 1);
  EXPECT_EQ(NotifyReady().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace autoscale
