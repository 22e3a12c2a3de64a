// pgbench (PostgreSQL 15's benchmark client) against a server, run from a network namespace (the
// client of HostsNetwork) for the end-to-end test and the demo: its progress while it runs
// (TPS, latency, failures each second) and, at the end, its totals and the longest gap between
// two transactions, read from its per-transaction log (what a client saw of a migration's
// downtime).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Pgbench> bench, Pgbench::Start({.host = "10.77.0.50",
//                    .netns = "/run/netns/c", .dir = dir, .duration = absl::Seconds(60)}));
//   ... bench->Progress() ...
//   ASSIGN_OR_RETURN(PgbenchResult result, bench->Wait(absl::Seconds(90)));
#pragma once

#include <signal.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/base/subprocess.h"

namespace autoscale::testing {

// Empty when pgbench (PostgreSQL 15's, or one in PATH) is here; otherwise what is missing.
std::string PgbenchMissing();

struct PgbenchOptions {
  std::string host;
  int port = 5432;
  // The network namespace (/run/netns/NAME) pgbench runs in; empty: this process's.
  std::string netns;
  // Where its output and per-transaction logs go.
  std::string dir;
  int clients = 4;
  // -T: how long it runs at most (Finish ends it sooner).
  absl::Duration duration = absl::Seconds(30);
  // -i: the scale (100,000 accounts per unit) of the tables Init makes.
  int scale = 1;
};

// `pgbench -i`: makes (or remakes) its tables. An error with pgbench's output when it fails or
// outlives `timeout`.
absl::Status PgbenchInit(const PgbenchOptions& options, absl::Duration timeout);

// One line of pgbench's --progress: the second ending at `time`.
struct PgbenchProgress {
  absl::Time time;
  double tps = 0;
  double latency_ms = 0;
  int64_t failed = 0;
};

struct PgbenchResult {
  // pgbench's exit code: 0 when every client ran to the end; 2 when one aborted (its connection
  // broke: pgbench never reconnects a client without -C).
  int exit_code = -1;
  int64_t transactions = -1;  // "number of transactions actually processed"
  int64_t failed = -1;        // "number of failed transactions"
  // Clients that aborted ("client N aborted in command ..." lines).
  int aborted_clients = 0;
  // The longest time between the ends of two consecutive transactions (of any client), and when
  // it ended.
  absl::Duration longest_gap;
  absl::Time longest_gap_end;
  // Every transaction's end, in order.
  std::vector<absl::Time> ends;
  std::vector<PgbenchProgress> progress;
  // Its output (stdout and stderr).
  std::string output;
};

class Pgbench {
 public:
  // Starts `pgbench -c clients -j 1 -T duration -P 1 --progress-timestamp -l` against the server.
  static absl::StatusOr<std::unique_ptr<Pgbench>> Start(const PgbenchOptions& options);
  ~Pgbench();
  Pgbench(const Pgbench&) = delete;
  Pgbench& operator=(const Pgbench&) = delete;

  bool Running() { return process_->Running(); }
  absl::Time started() const { return started_; }
  // Ends the run now as -T would (pgbench's own timer is SIGALRM): every client finishes its
  // transaction, pgbench prints its totals and exits 0 if all went well.
  void Finish() { process_->Signal(SIGALRM); }
  // The progress lines so far.
  std::vector<PgbenchProgress> Progress() const;
  // Waits up to `timeout` for it to end (it is killed after that) and reads its output and logs.
  absl::StatusOr<PgbenchResult> Wait(absl::Duration timeout);

 private:
  Pgbench(PgbenchOptions options, std::unique_ptr<Subprocess> process, absl::Time started)
      : options_(std::move(options)), process_(std::move(process)), started_(started) {}

  const PgbenchOptions options_;
  const std::unique_ptr<Subprocess> process_;
  const absl::Time started_;
};

// Parsing, exposed for tests: the --progress lines of `output`, and its totals into `result`.
std::vector<PgbenchProgress> ParsePgbenchProgress(const std::string& output);
absl::Status ParsePgbenchSummary(const std::string& output, PgbenchResult& result);
// Transaction ends from a per-transaction log ("client tx latency_us script epoch_s us ...").
absl::Status ParsePgbenchLog(const std::string& log, std::vector<absl::Time>& ends);

}  // namespace autoscale::testing
