#include "autoscale/testing/daemon.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace autoscale::testing {
namespace {

// The file's contents, if it exists.
std::optional<std::string> ReadIfExists(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(Options options) {
  std::remove(options.ready_file.c_str());
  std::vector<std::string> argv = options.argv;
  argv.push_back("--ready_file=" + options.ready_file);
  SpawnOptions spawn;
  spawn.output_file = options.log;
  int netns_fd = -1;
  if (!options.netns.empty()) {
    netns_fd = open(options.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) return absl::ErrnoToStatus(errno, "open " + options.netns);
    spawn.netns_fd = netns_fd;
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(argv, spawn);
  if (netns_fd >= 0) close(netns_fd);
  if (!process.ok()) return process.status();
  std::unique_ptr<Daemon> daemon(new Daemon(std::move(options), std::move(*process)));
  const Options& o = daemon->options_;
  const absl::Time deadline = absl::Now() + o.start_timeout;
  while (absl::Now() < deadline) {
    // Daemons write the ready file under another name and rename it: it is never partial.
    if (std::optional<std::string> ready = ReadIfExists(o.ready_file)) {
      daemon->ready_ = std::move(*ready);
      return daemon;
    }
    if (!daemon->Running()) {
      return absl::UnavailableError(
          absl::StrCat(argv[0], " ", DescribeWaitStatus(*daemon->process_->wait_status()),
                       " before it was ready; its log (", o.log, "):\n", daemon->LogTail(2000)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(argv[0], " wrote no ", o.ready_file, " within ",
                                                  absl::FormatDuration(o.start_timeout), "; see ",
                                                  o.log));
}

int Daemon::Stop(int sig, absl::Duration grace) { return ExitCode(process_->Stop(sig, grace)); }

std::string Daemon::LogTail(size_t bytes) const {
  std::string log = ReadIfExists(options_.log).value_or("");
  return log.size() > bytes ? log.substr(log.size() - bytes) : log;
}

}  // namespace autoscale::testing
