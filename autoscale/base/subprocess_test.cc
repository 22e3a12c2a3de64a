#include "autoscale/base/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

std::string TestDir() { return std::getenv("TEST_TMPDIR"); }

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether `pid` runs (a zombie does not: a reparented child may wait for its reaper).
bool Alive(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

bool DiesWithin(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (Alive(pid)) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// Waits until `path` has a line.
std::string AwaitLine(const std::string& path, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::string text = Read(path);
    if (text.find('\n') != std::string::npos) return text;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return "";
}

TEST(Subprocess, ReportsHowTheProgramExited) {
  auto p = Subprocess::Start({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<int> status = (*p)->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(ExitCode(*status), 3);
  EXPECT_EQ(DescribeWaitStatus(*status), "exited with status 3");
  EXPECT_FALSE((*p)->Running());
  EXPECT_FALSE((*p)->Signal(SIGTERM)) << "a reaped child's pid may belong to another process";
}

TEST(Subprocess, FindsProgramsInPath) {
  auto p = Subprocess::Start({"true"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ExitCode(*(*p)->Wait(absl::Seconds(10))), 0);
}

TEST(Spawn, NamesAMissingProgram) {
  absl::StatusOr<pid_t> pid = Spawn({"autoscale-no-such-program"});
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(pid.status().message().find("autoscale-no-such-program"), std::string::npos)
      << pid.status();
  EXPECT_EQ(Spawn({"/nonexistent/program"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Spawn({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Spawn, ReportsAFailedExec) {
  // Executable, but not a program the kernel can run.
  const std::string path = TestDir() + "/not-a-program";
  std::ofstream(path) << "\x01\x02\x03 garbage";
  ASSERT_EQ(chmod(path.c_str(), 0755), 0);
  absl::StatusOr<pid_t> pid = Spawn({path});
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("exec " + path), std::string::npos) << pid.status();
}

TEST(Spawn, AppendsOutputToTheFile) {
  const std::string log = TestDir() + "/append.log";
  SpawnOptions options;
  options.output_file = log;
  for (int i = 0; i < 2; ++i) {
    auto p = Subprocess::Start({"/bin/sh", "-c", "echo out; echo err >&2"}, options);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(ExitCode(*(*p)->Wait(absl::Seconds(10))), 0);
  }
  EXPECT_EQ(Read(log), "out\nerr\nout\nerr\n");
}

TEST(Spawn, ReplacesTheEnvironmentWhenGivenOne) {
  const std::string log = TestDir() + "/env.log";
  SpawnOptions options;
  options.output_file = log;
  options.env = std::vector<std::string>{"GREETING=hello"};
  auto p = Subprocess::Start({"/bin/sh", "-c", "echo \"$GREETING ${HOME:-nohome}\""}, options);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ExitCode(*(*p)->Wait(absl::Seconds(10))), 0);
  EXPECT_EQ(Read(log), "hello nohome\n");
}

TEST(Spawn, LeaksNoDescriptor) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);  // Not close-on-exec: only Spawn keeps it from the child.
  auto p = Subprocess::Start(
      {"/bin/sh", "-c",
       absl::StrCat("test ! -e /proc/self/fd/", fds[0], " -a ! -e /proc/self/fd/", fds[1])});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ExitCode(*(*p)->Wait(absl::Seconds(10))), 0) << "the child saw the pipe";
  close(fds[0]);
  close(fds[1]);
}

TEST(Spawn, PassesTheDescriptorsItIsTold) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  SpawnOptions options;
  options.inherit_fds = {fds[1]};
  auto p = Subprocess::Start(
      {"/bin/sh", "-c",
       absl::StrCat("echo through >&", fds[1], "; test ! -e /proc/self/fd/", fds[0])},
      options);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ExitCode(*(*p)->Wait(absl::Seconds(10))), 0) << "the child saw the read end";
  close(fds[1]);
  char buf[16] = {0};
  EXPECT_EQ(read(fds[0], buf, sizeof(buf) - 1), 8);
  EXPECT_STREQ(buf, "through\n");
  close(fds[0]);
}

TEST(Spawn, StartsWithDefaultSignalHandling) {
  // This process ignores SIGTERM and this thread blocks it; the child must do neither.
  struct sigaction ignore = {}, old_action;
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGTERM, &ignore, &old_action), 0);
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old_mask);
  auto p = Subprocess::Start({"sleep", "100"});
  sigaction(SIGTERM, &old_action, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  const int status = (*p)->Stop(SIGTERM, absl::Seconds(10));
  EXPECT_EQ(DescribeWaitStatus(status), "killed by signal 15");
}

TEST(Subprocess, StopKillsWhatIgnoresTheSignal) {
  const std::string log = TestDir() + "/ignore.log";
  SpawnOptions options;
  options.output_file = log;
  auto p =
      Subprocess::Start({"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 100"}, options);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(AwaitLine(log), "ready\n");
  EXPECT_EQ(DescribeWaitStatus((*p)->Stop(SIGTERM, absl::Milliseconds(200))), "killed by signal 9");
  EXPECT_EQ((*p)->wait_status(), (*p)->Stop()) << "stopping again changes nothing";
}

TEST(Subprocess, WaitTimesOutWhileItRuns) {
  auto p = Subprocess::Start({"sleep", "100"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->Wait(absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE((*p)->Running());
  (*p)->Kill();
  EXPECT_FALSE((*p)->Running());
  EXPECT_EQ(DescribeWaitStatus(*(*p)->wait_status()), "killed by signal 9");
}

TEST(Subprocess, KillReachesTheProcessGroup) {
  const std::string log = TestDir() + "/group.log";
  SpawnOptions options;
  options.output_file = log;
  options.new_process_group = true;
  auto p = Subprocess::Start({"/bin/sh", "-c", "sleep 100 & echo $!; wait"}, options);
  ASSERT_TRUE(p.ok()) << p.status();
  const pid_t grandchild = std::atoi(AwaitLine(log).c_str());
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(Alive(grandchild));
  (*p)->Kill();
  EXPECT_TRUE(DiesWithin(grandchild, absl::Seconds(10)));
}

TEST(Spawn, RunsAsAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  const std::string log = TestDir() + "/user.log";
  SpawnOptions options;
  options.output_file = log;
  options.user = SpawnOptions::User{65534, 65534};
  auto p = Subprocess::Start({"/bin/sh", "-c", "id -u; id -g"}, options);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(ExitCode(*(*p)->Wait(absl::Seconds(10))), 0);
  EXPECT_EQ(Read(log), "65534\n65534\n");
}

TEST(ForkChild, ExitsWithWhatTheFunctionReturns) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  absl::StatusOr<pid_t> pid = ForkChild([&] {
    // It inherits descriptors: the pipe is how such a child talks to its parent.
    char c = 'x';
    return write(pipe_fds[1], &c, 1) == 1 ? 7 : 1;
  });
  ASSERT_TRUE(pid.ok()) << pid.status();
  Subprocess child(*pid);
  EXPECT_EQ(ExitCode(*child.Wait(absl::Seconds(10))), 7);
  char c = 0;
  EXPECT_EQ(read(pipe_fds[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST(Spawn, ManyThreadsAtOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto p = Subprocess::Start({"true"});
        if (p.ok() && (*p)->Wait(absl::Seconds(30)).ok()) ++ok;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 80);
}

// PR_SET_PDEATHSIG fires when the forking thread ends: children started from a thread that has
// ended must still run, and must die with the process.
TEST(Spawn, ChildrenOutliveTheirThreadAndDieWithTheProcess) {
  const std::string helper =
      absl::StrCat(std::getenv("TEST_SRCDIR"), "/", std::getenv("TEST_WORKSPACE"),
                   "/autoscale/base/subprocess_test_helper");
  const std::string log = TestDir() + "/helper.log";
  SpawnOptions options;
  options.output_file = log;
  auto helper_process = Subprocess::Start({helper}, options);
  ASSERT_TRUE(helper_process.ok()) << helper_process.status();
  const std::string line = AwaitLine(log);
  int self = 0, spawned = 0, forked = 0;
  ASSERT_EQ(std::sscanf(line.c_str(), "%d %d %d", &self, &spawned, &forked), 3) << line;
  EXPECT_EQ(self, (*helper_process)->pid());
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(Alive(spawned)) << "the spawned child died with the thread that asked for it";
  EXPECT_TRUE(Alive(forked)) << "the forked child died with the thread that asked for it";
  (*helper_process)->Kill();
  EXPECT_TRUE(DiesWithin(spawned, absl::Seconds(10))) << "the spawned child outlived its parent";
  EXPECT_TRUE(DiesWithin(forked, absl::Seconds(10))) << "the forked child outlived its parent";
}

}  // namespace
}  // namespace autoscale
