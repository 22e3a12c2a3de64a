#include "autoscale/testing/daemon.h"

#include <fstream>
#include <string>

#include "autoscale/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::testing {
namespace {

using ::testing::HasSubstr;

// A stand-in daemon: sh -c SCRIPT --ready_file=PATH, so $0 is the flag Daemon adds.
Daemon::Options Shell(const TempDir& dir, const std::string& script) {
  return {.argv = {"/bin/sh", "-c", "ready=${0#--ready_file=}; " + script},
          .log = dir.path() + "/daemon.log",
          .ready_file = dir.path() + "/daemon.ready",
          .start_timeout = absl::Seconds(10)};
}

TEST(Daemon, StartsOnceItWroteItsReadyFile) {
  TempDir dir("daemon");
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(
      Shell(dir,
            "echo starting; sleep 0.2; echo '{\"port\": 7}' > $ready.tmp; mv $ready.tmp $ready; "
            "exec sleep 100"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->ready(), "{\"port\": 7}\n");
  EXPECT_TRUE((*d)->Running());
  EXPECT_EQ((*d)->LogTail(), "starting\n");
  EXPECT_EQ((*d)->Stop(SIGTERM, absl::Seconds(10)), 128 + SIGTERM);
  EXPECT_FALSE((*d)->Running());
}

TEST(Daemon, RemovesAStaleReadyFileBeforeItStarts) {
  TempDir dir("daemon");
  Daemon::Options options = Shell(dir, "sleep 0.3; echo new > $ready; exec sleep 100");
  { std::ofstream(options.ready_file) << "stale\n"; }
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->ready(), "new\n");
}

TEST(Daemon, ExitBeforeReadyIsAnErrorWithTheLog) {
  TempDir dir("daemon");
  absl::StatusOr<std::unique_ptr<Daemon>> d =
      Daemon::Start(Shell(dir, "echo 'no such --config' >&2; exit 2"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(d.status().message(), HasSubstr("exited with status 2 before it was ready"));
  EXPECT_THAT(d.status().message(), HasSubstr("no such --config"));
}

TEST(Daemon, NoReadyFileInTimeIsDeadlineExceeded) {
  TempDir dir("daemon");
  Daemon::Options options = Shell(dir, "exec sleep 100");
  options.start_timeout = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<Daemon>> d = Daemon::Start(options);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDeadlineExceeded) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("daemon.ready"));
}

TEST(Daemon, KillIsACrash) {
  TempDir dir("daemon");
  absl::StatusOr<std::unique_ptr<Daemon>> d =
      Daemon::Start(Shell(dir, "trap '' TERM; echo up > $ready; exec sleep 100"));
  ASSERT_TRUE(d.ok()) << d.status();
  (*d)->Kill();
  EXPECT_FALSE((*d)->Running());
  EXPECT_EQ((*d)->Stop(), 128 + SIGKILL) << "stopping a dead daemon reports how it ended";
}

}  // namespace
}  // namespace autoscale::testing
