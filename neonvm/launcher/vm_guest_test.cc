// The launcher with the booted test guest: a forwarded port reaches a service in the guest from
// 127.0.0.1, the guest cannot reach the host (restrict=on), the guest reads its agent token
// through fw_cfg, and a guest panic ends QEMU.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "gtest/gtest.h"
#include "neonvm/launcher/vm.h"

namespace autoscale::neonvm::launcher {
namespace {

// Connects to 127.0.0.1:port and returns what the peer sends before closing ("" on failure).
std::string ReadFrom(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  std::string out;
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, n);
  }
  close(fd);
  return out;
}

// One guest for all of this (booting is the slow part): it also gets an agent token.
TEST(VmGuest, ForwardedPortReachesTheGuestAndTheGuestReachesNothing) {
  AUTOSCALE_REQUIRE_GUEST();
  testing::TempDir dir;
  auto base = guest::FindGuestImage();
  ASSERT_TRUE(base.ok()) << base.status();
  auto image = guest::AddFiles(*base, {}, "exec nc -ll -p 7000 -e /bin/echo hello-from-guest\n",
                               dir.path() + "/initrd");
  ASSERT_TRUE(image.ok()) << image.status();
  auto spec = testing::GuestSpec("net");
  ASSERT_TRUE(spec.ok());
  spec->initrd = image->initrd;
  const std::string token = rpc::monitor::NewAgentToken();
  spec->agent_token = token;
  auto booted = testing::Boot(*spec);
  ASSERT_TRUE(booted.ok()) << booted.status();

  // The agent token: in the runtime directory, only for its owner; in the guest, where the
  // monitor reads it (kGuestAgentTokenPath), and not on the guest's kernel command line.
  const std::string token_file = booted->vm->runtime_dir() + "/" + kAgentTokenFile;
  struct stat st;
  ASSERT_EQ(stat(token_file.c_str(), &st), 0) << token_file;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<std::string> on_host = rpc::monitor::ReadAgentToken(token_file);
  ASSERT_TRUE(on_host.ok()) << on_host.status();
  EXPECT_EQ(*on_host, token);
  auto in_guest = booted->console->Run(
      absl::StrCat("cat ", rpc::monitor::kGuestAgentTokenPath, "; echo; cat /proc/cmdline"));
  ASSERT_TRUE(in_guest.ok()) << in_guest.status();
  const std::vector<std::string> lines = absl::StrSplit(*in_guest, '\n');
  ASSERT_GE(lines.size(), 2u) << *in_guest;
  EXPECT_EQ(lines[0], token) << "the guest read: " << *in_guest;
  EXPECT_FALSE(absl::StrContains(lines[1], token)) << lines[1];

  auto port = booted->vm->HostPort(7000);
  ASSERT_TRUE(port.ok()) << port.status();

  std::string got;
  for (int i = 0; i < 50 && got.empty(); ++i) {  // the service starts in the background
    got = ReadFrom(*port);
    if (got.empty()) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(got, "hello-from-guest\n");

  // QEMU runs under its seccomp filter (Seccomp: 2 is "filter" in proc(5); QEMU installs it with
  // SECCOMP_FILTER_FLAG_TSYNC, for all its threads).
  std::ifstream status(absl::StrCat("/proc/", booted->vm->pid(), "/status"));
  std::string line, seccomp;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "Seccomp:")) seccomp = line;
  }
  EXPECT_EQ(seccomp, "Seccomp:\t2");

  // A host service on loopback, which the guest would reach as 10.0.2.2 without restrict=on.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof(a);
  getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  auto out = booted->console->Run(
      absl::StrCat("nc -w 2 10.0.2.2 ", ntohs(a.sin_port), " </dev/null; echo rc=$?"));
  close(listener);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(absl::StrContains(*out, "rc=1")) << *out;
}

TEST(VmGuest, GuestPanicEndsQemu) {
  AUTOSCALE_REQUIRE_GUEST();
  auto spec = testing::GuestSpec("panic");
  ASSERT_TRUE(spec.ok());
  auto booted = testing::Boot(*spec);
  ASSERT_TRUE(booted.ok()) << booted.status();
  // The shell dies with the kernel: no reply is expected.
  (void)booted->console->Run("echo c > /proc/sysrq-trigger", absl::Seconds(2));
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (booted->vm->Running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(booted->vm->Running());
  EXPECT_EQ(booted->vm->ExitDescription(), "exited with status 0");
}

// The boot script's jobs end (and are reparented to init when the script ends first): the guest
// stays up. With an interactive shell as PID 1, the first such exit ended init and panicked.
TEST(VmGuest, BootScriptJobsThatEndLeaveTheGuestUp) {
  AUTOSCALE_REQUIRE_GUEST();
  testing::TempDir dir;
  auto base = guest::FindGuestImage();
  ASSERT_TRUE(base.ok()) << base.status();
  auto image = guest::AddFiles(*base, {}, "sleep 1 &\n", dir.path() + "/initrd");
  ASSERT_TRUE(image.ok()) << image.status();
  auto spec = testing::GuestSpec("orphans");
  ASSERT_TRUE(spec.ok());
  spec->initrd = image->initrd;
  auto booted = testing::Boot(*spec);
  ASSERT_TRUE(booted.ok()) << booted.status();
  absl::SleepFor(absl::Seconds(2));  // the orphaned sleep has ended
  auto out = booted->console->Run("echo still-here");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "still-here");
  EXPECT_TRUE(booted->vm->Running());
}

}  // namespace
}  // namespace autoscale::neonvm::launcher
