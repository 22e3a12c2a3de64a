// What the end-to-end test and the demo read from pgbench's output and per-transaction log (the
// formats of PostgreSQL 15's pgbench), and the errors for what they cannot read.
#include "autoscale/testing/pgbench.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace autoscale::testing {
namespace {

TEST(Pgbench, ReadsProgressLinesWithTimestampsAndFailures) {
  const std::string out =
      "pgbench (15.18 (Debian 15.18-0+deb12u1))\n"
      "progress: 1733467200.004 s, 45.0 tps, lat 88.123 ms stddev 12.345, 0 failed\n"
      "progress: 1733467201.004 s, 0.0 tps, lat 0.000 ms stddev 0.000, 2 failed\n"
      "progress: garbage\n";
  std::vector<PgbenchProgress> p = ParsePgbenchProgress(out);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].time, absl::FromUnixMicros(1733467200004000));
  EXPECT_DOUBLE_EQ(p[0].tps, 45.0);
  EXPECT_DOUBLE_EQ(p[0].latency_ms, 88.123);
  EXPECT_EQ(p[0].failed, 0);
  EXPECT_EQ(p[1].failed, 2);
}

TEST(Pgbench, ReadsTotalsAndCountsAbortedClients) {
  PgbenchResult r;
  ASSERT_TRUE(ParsePgbenchSummary("number of clients: 4\n"
                                  "number of transactions actually processed: 1234\n"
                                  "number of failed transactions: 0 (0.000%)\n",
                                  r)
                  .ok());
  EXPECT_EQ(r.transactions, 1234);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(r.aborted_clients, 0);

  PgbenchResult broken;
  ASSERT_TRUE(
      ParsePgbenchSummary("pgbench: error: client 2 aborted in command 4 (SQL) of script "
                          "0; perhaps the backend died while processing\n"
                          "pgbench: error: client 3 aborted in command 4 (SQL) of script 0\n"
                          "pgbench: error: Run was aborted; the above results are incomplete.\n"
                          "number of transactions actually processed: 10/40\n"
                          "number of failed transactions: 0 (0.000%)\n",
                          broken)
          .ok());
  EXPECT_EQ(broken.transactions, 10);
  EXPECT_EQ(broken.aborted_clients, 2);
}

TEST(Pgbench, OutputWithoutTotalsIsAnError) {
  PgbenchResult r;
  absl::Status s = ParsePgbenchSummary("pgbench: error: connection to server failed\n", r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "connection to server failed")) << s;
}

TEST(Pgbench, ReadsTransactionEndsFromItsLogAndNamesABadLine) {
  std::vector<absl::Time> ends;
  ASSERT_TRUE(ParsePgbenchLog("0 0 12345 0 1733467200 123456\n"
                              "1 0 failed 0 1733467201 5\n",
                              ends)
                  .ok());
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[0], absl::FromUnixMicros(1733467200123456));
  EXPECT_EQ(ends[1], absl::FromUnixMicros(1733467201000005));
  absl::Status bad = ParsePgbenchLog("0 0 12345 0 1733467200 123456\n0 1 7\n", ends);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.message(), "line 2")) << bad;
}

}  // namespace
}  // namespace autoscale::testing
