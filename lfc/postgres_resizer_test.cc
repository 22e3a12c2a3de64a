#include "lfc/postgres_resizer.h"

#include <signal.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/postgres_test_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lfc/sizing.h"

namespace autoscale::lfc {
namespace {

using ::autoscale::testing::PostgresTestServer;
using ::autoscale::testing::QueryOne;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<PostgresResizer>> Resizer(
    std::string conninfo, std::string setting, absl::Duration timeout = absl::Seconds(10)) {
  PostgresResizerOptions options;
  options.conninfo = std::move(conninfo);
  options.setting = std::move(setting);
  options.timeout = timeout;
  return PostgresResizer::Create(std::move(options));
}

class PostgresResizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    PostgresTestServer::Options options;
    // Vanilla PostgreSQL knows the setting once postgresql.conf mentions it (Neon's extension
    // defines it); "lfc.size_mb" shows that the setting is configurable.
    // neon.max_file_cache_size bounds neon.file_cache_size_limit, as Neon's extension does.
    options.config_lines = {"neon.file_cache_size_limit = 0", "lfc.size_mb = 0",
                            "neon.max_file_cache_size = 1024", "lfc.max_size = 'lots'"};
    absl::StatusOr<std::unique_ptr<PostgresTestServer>> started =
        PostgresTestServer::Start(options);
    if (started.ok()) {
      server_ = started->release();
    } else {
      start_error_ = new absl::Status(started.status());
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    AUTOSCALE_REQUIRE_POSTGRES();
    ASSERT_NE(server_, nullptr) << "could not start PostgreSQL: " << *start_error_;
  }

  // What a new session sees for `setting`, once it equals `want` or after 10 s. The reload is
  // asynchronous: the postmaster re-reads the files after pg_reload_conf() returns.
  static std::string WaitForSetting(const std::string& setting, const std::string& want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::string last;
    do {
      last = QueryOne(server_->ConnInfo(), "SHOW " + setting);
      if (last == want) break;
      absl::SleepFor(absl::Milliseconds(20));
    } while (absl::Now() < deadline);
    return last;
  }

  static inline PostgresTestServer* server_ = nullptr;
  static inline absl::Status* start_error_ = nullptr;
};

TEST_F(PostgresResizerTest, ResizeSetsTheSettingOnTheServer) {
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->ConnInfo(), "neon.file_cache_size_limit");
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  // Whole MiB, rounded down.
  ASSERT_TRUE((*resizer)->SetSizeBytes(512 * kMiB + 12345).ok());
  EXPECT_EQ(WaitForSetting("neon.file_cache_size_limit", "512"), "512");
  // What the monitor does after an upscale to 1 GiB (below neon.max_file_cache_size).
  const std::string one_gib = std::to_string(CacheSizeBytes(uint64_t{1} << 30) >> 20);
  ASSERT_LT(std::stoi(one_gib), 1024);
  absl::Status status = (*resizer)->SetSizeBytes(CacheSizeBytes(uint64_t{1} << 30));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(WaitForSetting("neon.file_cache_size_limit", one_gib), one_gib);
  ASSERT_TRUE((*resizer)->SetSizeBytes(0).ok());
  EXPECT_EQ(WaitForSetting("neon.file_cache_size_limit", "0"), "0");
  // It was written by ALTER SYSTEM, so it survives a restart.
  EXPECT_EQ(QueryOne(server_->ConnInfo(),
                     "SELECT setting FROM pg_file_settings WHERE name = "
                     "'neon.file_cache_size_limit' AND sourcefile LIKE '%postgresql.auto.conf'"),
            "0");
}

TEST_F(PostgresResizerTest, TheSettingIsConfigurable) {
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->SocketConnInfo(), "lfc.size_mb");  // over the unix socket
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  ASSERT_TRUE((*resizer)->SetSizeBytes(64 * kMiB).ok());
  EXPECT_EQ(WaitForSetting("lfc.size_mb", "64"), "64");
}

// Neon rejects a size above neon.max_file_cache_size, and a failed shrink would block every
// downscale: the size is capped at it.
TEST_F(PostgresResizerTest, CapsTheSizeAtTheMaximumSetting) {
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->ConnInfo(), "neon.file_cache_size_limit");
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  // An upscale to 4 GiB would want more than 1024 MiB.
  ASSERT_GT(CacheSizeBytes(uint64_t{4} << 30) >> 20, 1024u);
  absl::Status status = (*resizer)->SetSizeBytes(CacheSizeBytes(uint64_t{4} << 30));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(WaitForSetting("neon.file_cache_size_limit", "1024"), "1024");
  ASSERT_TRUE((*resizer)->SetSizeBytes(256 * kMiB).ok());
  EXPECT_EQ(WaitForSetting("neon.file_cache_size_limit", "256"), "256");

  // A maximum that is not a size is an error naming it; one the server lacks is no cap.
  PostgresResizerOptions options;
  options.conninfo = server_->ConnInfo();
  options.setting = "lfc.size_mb";
  options.max_setting = "lfc.max_size";
  auto bad = PostgresResizer::Create(options);
  ASSERT_TRUE(bad.ok()) << bad.status();
  status = (*bad)->SetSizeBytes(64 * kMiB);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("lfc.max_size is \"lots\""));
  options.max_setting = "lfc.not_declared";
  auto uncapped = PostgresResizer::Create(options);
  ASSERT_TRUE(uncapped.ok()) << uncapped.status();
  ASSERT_TRUE((*uncapped)->SetSizeBytes(2048 * kMiB).ok());
  EXPECT_EQ(WaitForSetting("lfc.size_mb", "2048"), "2048");
}

TEST_F(PostgresResizerTest, UnknownSettingIsAClearError) {
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->ConnInfo(), "neon.not_declared");
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  const absl::Status status = (*resizer)->SetSizeBytes(64 * kMiB);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("ALTER SYSTEM: ERROR:  unrecognized configuration parameter "
                        "\"neon.not_declared\""));
  EXPECT_THAT(std::string(status.message()), HasSubstr("lfc postgres resize to 64 MiB"));
}

TEST_F(PostgresResizerTest, NonSuperuserIsRefused) {
  ASSERT_EQ(QueryOne(server_->ConnInfo(), "DROP ROLE IF EXISTS lfc_app"), "");
  ASSERT_EQ(QueryOne(server_->ConnInfo(), "CREATE ROLE lfc_app LOGIN"), "");
  const std::string before = QueryOne(server_->ConnInfo(), "SHOW neon.file_cache_size_limit");
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->ConnInfo("lfc_app"), "neon.file_cache_size_limit");
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  const absl::Status status = (*resizer)->SetSizeBytes(1000 * kMiB);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("permission denied to set parameter \"neon.file_cache_size_limit\""));
  EXPECT_THAT(std::string(status.message()), HasSubstr("on lfc_app@127.0.0.1:"));
  EXPECT_EQ(QueryOne(server_->ConnInfo(), "SHOW neon.file_cache_size_limit"), before);
}

TEST_F(PostgresResizerTest, UnknownRoleIsRefused) {
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->ConnInfo("no_such_role"), "neon.file_cache_size_limit");
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  const absl::Status status = (*resizer)->SetSizeBytes(kMiB);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("role \"no_such_role\" does not exist"));
}

TEST_F(PostgresResizerTest, ServerThatIsDownIsUnavailable) {
  // A second server, started and stopped again: its address is real but nobody listens.
  absl::StatusOr<std::unique_ptr<PostgresTestServer>> gone = PostgresTestServer::Start({});
  ASSERT_TRUE(gone.ok()) << gone.status();
  const std::string conninfo = (*gone)->ConnInfo() + " password=s3cret";
  (*gone)->Stop();
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(conninfo, "neon.file_cache_size_limit");
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  const absl::Status status = (*resizer)->SetSizeBytes(kMiB);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("connect: "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("Connection refused"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("on postgres@127.0.0.1:", (*gone)->port())));
  EXPECT_EQ(std::string(status.message()).find("s3cret"), std::string::npos) << status;
}

TEST_F(PostgresResizerTest, HungServerTimesOutAndLaterCallsWork) {
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer =
      Resizer(server_->ConnInfo(), "neon.file_cache_size_limit", absl::Seconds(1));
  ASSERT_TRUE(resizer.ok()) << resizer.status();
  // A stopped postmaster: the kernel accepts the connection, nobody answers.
  ASSERT_EQ(kill(server_->pid(), SIGSTOP), 0);
  {
    absl::Cleanup resume = [] { kill(server_->pid(), SIGCONT); };
    const absl::Status status = (*resizer)->SetSizeBytes(256 * kMiB);
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("connect: timed out after 1s"));
  }
  // The caller (the monitor) carries on; the next call works once the server is back.
  const absl::Status status = (*resizer)->SetSizeBytes(256 * kMiB);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(WaitForSetting("neon.file_cache_size_limit", "256"), "256");
}

// The working-set windows (the monitor's --lfc_windows_function) from a function standing for
// Neon's (vanilla PostgreSQL has no LFC): called for 60, 120, ... 3600 s, a NULL reads as 0.
TEST_F(PostgresResizerTest, ReadsTheWorkingSetWindowsFromAFunction) {
  ASSERT_TRUE(
      QueryOne(server_->ConnInfo(),
               "CREATE SCHEMA IF NOT EXISTS ws; CREATE FUNCTION ws.pages(integer) RETURNS "
               "bigint LANGUAGE sql AS 'SELECT CASE WHEN $1 = 3600 THEN NULL ELSE $1 * 10 END'")
          .ok());
  absl::StatusOr<std::vector<double>> windows =
      ReadPostgresWorkingSet({.conninfo = server_->ConnInfo(), .function = "ws.pages"});
  ASSERT_TRUE(windows.ok()) << windows.status();
  ASSERT_EQ(windows->size(), 60u);
  for (int i = 0; i < 59; ++i) EXPECT_EQ((*windows)[i], (i + 1) * 600) << "window " << i + 1;
  EXPECT_EQ(windows->back(), 0);
}

// The working-set windows (the monitor's --lfc_windows_function): a missing function, one that
// answers a negative size, and a malformed name are clear errors naming the function.
TEST_F(PostgresResizerTest, WorkingSetErrorsNameTheFunction) {
  absl::StatusOr<std::vector<double>> missing =
      ReadPostgresWorkingSet({.conninfo = server_->ConnInfo(), .function = "neon.no_such"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("neon.no_such"));
  ASSERT_TRUE(QueryOne(server_->ConnInfo(),
                       "CREATE FUNCTION ws_negative(integer) RETURNS integer LANGUAGE sql AS "
                       "'SELECT CASE WHEN $1 < 600 THEN 5 ELSE -1 END'")
                  .ok());
  absl::StatusOr<std::vector<double>> negative =
      ReadPostgresWorkingSet({.conninfo = server_->ConnInfo(), .function = "ws_negative"});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kFailedPrecondition) << negative.status();
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("window 10 is \"-1\""));
  absl::StatusOr<std::vector<double>> bad =
      ReadPostgresWorkingSet({.conninfo = server_->ConnInfo(), .function = "x(1); DROP"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
}

TEST(PostgresResizerCreateTest, RejectsBadOptions) {
  for (const char* bad : {"", "neon.", ".x", "a.b.c", "1abc", "neon.x; DROP TABLE t", "x y"}) {
    absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer = Resizer("", bad);
    EXPECT_EQ(resizer.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  for (const char* good : {"neon.file_cache_size_limit", "work_mem", "_x.y$1"}) {
    EXPECT_TRUE(Resizer("", good).ok()) << good;
  }
  absl::StatusOr<std::unique_ptr<PostgresResizer>> resizer = Resizer("nonsense=1", "x");
  EXPECT_EQ(resizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(resizer.status().message()), HasSubstr("bad connection string"));
  resizer = Resizer("host=localhost", "x", absl::ZeroDuration());
  EXPECT_EQ(resizer.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace autoscale::lfc
