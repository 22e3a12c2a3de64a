#include "autoscale/testing/pgbench.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::testing {
namespace {

constexpr char kPostgres15Pgbench[] = "/usr/lib/postgresql/15/bin/pgbench";
constexpr char kLogPrefix[] = "pgbench_log";

std::string Program() {
  if (access(kPostgres15Pgbench, X_OK) == 0) return kPostgres15Pgbench;
  return "pgbench";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs pgbench with `args` (in the options' namespace), its output appended to `log`.
absl::StatusOr<std::unique_ptr<Subprocess>> Spawn(const PgbenchOptions& o,
                                                  const std::vector<std::string>& args,
                                                  const std::string& log) {
  std::vector<std::string> argv = {Program(), "-h",      o.host, "-p", absl::StrCat(o.port),
                                   "-U",      "postgres"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("postgres");
  SpawnOptions spawn;
  spawn.output_file = log;
  int fd = -1;
  if (!o.netns.empty()) {
    fd = open(o.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::ErrnoToStatus(errno, "open " + o.netns);
    spawn.netns_fd = fd;
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(argv, spawn);
  if (fd >= 0) close(fd);
  return p;
}

std::optional<double> NumberBefore(absl::string_view field, absl::string_view unit) {
  field = absl::StripAsciiWhitespace(field);
  if (!absl::ConsumeSuffix(&field, unit)) return std::nullopt;
  double v;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(field), &v)) return std::nullopt;
  return v;
}

}  // namespace

std::string PgbenchMissing() {
  if (access(kPostgres15Pgbench, X_OK) == 0) return "";
  for (absl::string_view dir : absl::StrSplit(getenv("PATH") ? getenv("PATH") : "", ':')) {
    if (access(absl::StrCat(dir, "/pgbench").c_str(), X_OK) == 0) return "";
  }
  return "no pgbench (install postgresql-15 or postgresql-client-15)";
}

std::vector<PgbenchProgress> ParsePgbenchProgress(const std::string& output) {
  // "progress: 1733467200.004 s, 45.0 tps, lat 88.123 ms stddev 12.345, 0 failed"
  std::vector<PgbenchProgress> out;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (!absl::ConsumePrefix(&line, "progress: ")) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ", ");
    if (fields.size() < 3) continue;
    std::optional<double> t = NumberBefore(fields[0], " s");
    std::optional<double> tps = NumberBefore(fields[1], " tps");
    if (!t || !tps) continue;
    PgbenchProgress p;
    p.time = absl::FromUnixMicros(static_cast<int64_t>(*t * 1e6));
    p.tps = *tps;
    absl::string_view lat = fields[2];
    if (absl::ConsumePrefix(&lat, "lat ")) {
      std::vector<absl::string_view> words = absl::StrSplit(lat, ' ');
      if (!words.empty()) (void)absl::SimpleAtod(words[0], &p.latency_ms);
    }
    for (size_t i = 3; i < fields.size(); ++i) {
      if (std::optional<double> f = NumberBefore(fields[i], " failed")) {
        p.failed = static_cast<int64_t>(*f);
      }
    }
    out.push_back(p);
  }
  return out;
}

absl::Status ParsePgbenchSummary(const std::string& output, PgbenchResult& result) {
  result.aborted_clients = 0;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "number of transactions actually processed: ")) {
      // "1234" or, with -t, "1234/2000".
      std::vector<absl::string_view> parts = absl::StrSplit(line, '/');
      if (!absl::SimpleAtoi(parts[0], &result.transactions)) {
        return absl::InvalidArgumentError(absl::StrCat("pgbench: unreadable count: ", line));
      }
    } else if (absl::ConsumePrefix(&line, "number of failed transactions: ")) {
      std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
      if (!absl::SimpleAtoi(parts[0], &result.failed)) {
        return absl::InvalidArgumentError(absl::StrCat("pgbench: unreadable failures: ", line));
      }
    } else if (absl::StrContains(line, "client ") && absl::StrContains(line, " aborted in ")) {
      // "pgbench: error: client 2 aborted in command 4 (SQL) of script 0; ..."
      ++result.aborted_clients;
    }
  }
  if (result.transactions < 0 || result.failed < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pgbench printed no totals (transactions, failures); its output:\n",
                     output.size() > 2000 ? output.substr(output.size() - 2000) : output));
  }
  return absl::OkStatus();
}

absl::Status ParsePgbenchLog(const std::string& log, std::vector<absl::Time>& ends) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipWhitespace())) {
    ++n;
    // client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t s, us;
    if (f.size() < 6 || !absl::SimpleAtoi(f[4], &s) || !absl::SimpleAtoi(f[5], &us)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pgbench log line ", n, ": unreadable: \"", line, "\""));
    }
    ends.push_back(absl::FromUnixSeconds(s) + absl::Microseconds(us));
  }
  return absl::OkStatus();
}

absl::Status PgbenchInit(const PgbenchOptions& options, absl::Duration timeout) {
  const std::string log = options.dir + "/pgbench-init.log";
  ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> p,
                   Spawn(options, {"-i", "-q", "-s", absl::StrCat(options.scale)}, log));
  absl::StatusOr<int> status = p->Wait(timeout);
  if (!status.ok()) {
    p->Kill();
    return absl::DeadlineExceededError(
        absl::StrCat("pgbench -i ran over ", absl::FormatDuration(timeout), ":\n", ReadFile(log)));
  }
  if (*status != 0) {
    return absl::InternalError(
        absl::StrCat("pgbench -i ", DescribeWaitStatus(*status), ":\n", ReadFile(log)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Pgbench>> Pgbench::Start(const PgbenchOptions& options) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options.dir, ec)) {
    if (absl::StartsWith(entry.path().filename().string(), kLogPrefix)) {
      std::filesystem::remove(entry.path(), ec);
    }
  }
  std::filesystem::remove(options.dir + "/pgbench.log", ec);
  // One thread (-j 1): one log file; -n: no vacuum first (the tables are fresh from -i).
  const absl::Time started = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> p,
                   Spawn(options,
                         {"-n", "-c", absl::StrCat(options.clients), "-j", "1", "-T",
                          absl::StrCat(absl::ToInt64Seconds(options.duration)), "-P", "1",
                          "--progress-timestamp", "-l",
                          absl::StrCat("--log-prefix=", options.dir, "/", kLogPrefix)},
                         options.dir + "/pgbench.log"));
  return std::unique_ptr<Pgbench>(new Pgbench(options, std::move(p), started));
}

Pgbench::~Pgbench() { process_->Kill(); }

std::vector<PgbenchProgress> Pgbench::Progress() const {
  return ParsePgbenchProgress(ReadFile(options_.dir + "/pgbench.log"));
}

absl::StatusOr<PgbenchResult> Pgbench::Wait(absl::Duration timeout) {
  absl::StatusOr<int> status = process_->Wait(timeout);
  PgbenchResult r;
  r.output = ReadFile(options_.dir + "/pgbench.log");
  if (!status.ok()) {
    process_->Kill();
    return absl::DeadlineExceededError(
        absl::StrCat("pgbench still ran ", absl::FormatDuration(timeout), " later:\n", r.output));
  }
  r.exit_code = ExitCode(*status);
  r.progress = ParsePgbenchProgress(r.output);
  RETURN_IF_ERROR(ParsePgbenchSummary(r.output, r));
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.dir, ec)) {
    if (!absl::StartsWith(entry.path().filename().string(), kLogPrefix)) continue;
    RETURN_IF_ERROR(ParsePgbenchLog(ReadFile(entry.path().string()), r.ends));
  }
  std::sort(r.ends.begin(), r.ends.end());
  for (size_t i = 1; i < r.ends.size(); ++i) {
    if (r.ends[i] - r.ends[i - 1] > r.longest_gap) {
      r.longest_gap = r.ends[i] - r.ends[i - 1];
      r.longest_gap_end = r.ends[i];
    }
  }
  return r;
}

}  // namespace autoscale::testing
