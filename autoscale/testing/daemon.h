// One of this project's daemons (the scheduler, an agent) as a child process, for tests and the
// local cluster: started with --ready_file, its stdout and stderr appended to a log, and ready
// once it has written that file. It is killed when the Daemon is destroyed, and dies with this
// process (autoscale/base/subprocess.h).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Daemon> scheduler,
//                    Daemon::Start({.argv = {binary, "--data_dir=" + dir + "/data",
//                                            "--listen=unix:" + dir + "/s.sock"},
//                                   .log = dir + "/scheduler.log",
//                                   .ready_file = dir + "/scheduler.ready"}));
//   scheduler->Kill();                 // a crash: SIGKILL
//   int code = scheduler->Stop();      // SIGTERM: its exit code
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/base/subprocess.h"

namespace autoscale::testing {

class Daemon {
 public:
  struct Options {
    // The program and its flags; Start adds --ready_file.
    std::vector<std::string> argv;
    // Where its stdout and stderr are appended.
    std::string log;
    // Removed before the start; the daemon writes it once it serves.
    std::string ready_file;
    absl::Duration start_timeout = absl::Seconds(20);
    // A network namespace (/run/netns/NAME) to run it in, such as a host of HostsNetwork; empty:
    // this process's.
    std::string netns{};
  };

  // Returns once the daemon has written its ready file. An error if it exits before (with the
  // tail of its log) or does not write it within the timeout; the daemon is killed then.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(Options options);

  // What the daemon wrote to its ready file (e.g. the addresses it serves on).
  const std::string& ready() const { return ready_; }
  pid_t pid() const { return process_->pid(); }
  bool Running() { return process_->Running(); }
  // SIGKILL, as in a crash; reaps it.
  void Kill() { process_->Kill(); }
  // Sends `sig` and waits up to `grace` for the exit (SIGKILL after that); returns its exit code
  // (128 + the signal if a signal ended it).
  int Stop(int sig = SIGTERM, absl::Duration grace = absl::Seconds(5));
  // The last `bytes` of its log.
  std::string LogTail(size_t bytes = 4000) const;

 private:
  Daemon(Options options, std::unique_ptr<Subprocess> process)
      : options_(std::move(options)), process_(std::move(process)) {}

  const Options options_;
  const std::unique_ptr<Subprocess> process_;
  std::string ready_;
};

}  // namespace autoscale::testing
