// Child processes: the one place this project forks. QEMU (neonvm/launcher), the daemons of a
// local cluster, PostgreSQL and cgroup fixtures in tests all start here.
//
// A child dies with this process (PR_SET_PDEATHSIG). That signal fires when the *thread* that
// forked the child ends, not the process: a child forked from a short-lived thread (a gRPC
// handler, a test's helper thread) would be killed when that thread returns. So every fork runs
// on one thread that lives as long as the process, whichever thread asks.
//
//   SpawnOptions options;
//   options.output_file = dir + "/qemu.log";
//   ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> qemu,
//                    Subprocess::Start({"qemu-system-x86_64", "-S", ...}, options));
//   ...
//   int status = qemu->Stop(SIGTERM, absl::Seconds(5));  // SIGKILL after 5 s
//   LOG(INFO) << DescribeWaitStatus(status);              // "exited with status 0"
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace autoscale {

struct SpawnOptions {
  // The child's stdout and stderr: this descriptor if >= 0, else this file opened for appending
  // (created if missing), else this process's own.
  int output_fd = -1;
  std::string output_file;
  // The child's environment ("NAME=value"); unset: this process's.
  std::optional<std::vector<std::string>> env;
  // In a process group of its own (so a signal to -pid reaches whatever it starts, and a
  // terminal's Ctrl-C does not reach it).
  bool new_process_group = false;
  // Run as this user and group (this process must be root); unset: as this process. The death
  // signal is armed after the switch, which would clear it.
  struct User {
    uid_t uid;
    gid_t gid;
  };
  std::optional<User> user;
  // Descriptors (>= 3) the program inherits under the same numbers, such as a tap device QEMU is
  // told about by number; every other descriptor above stderr is closed.
  std::vector<int> inherit_fds;
  // The network namespace the program runs in (an open /run/netns/NAME); -1: this process's.
  int netns_fd = -1;
};

// Starts `argv[0]` (a path, or a name looked up in PATH) with `argv`. The child's stdin is
// /dev/null; of this process's descriptors it inherits only stdout and stderr (no other socket
// or pipe leaks into it); its signal mask is empty and its signal dispositions are the defaults;
// it is killed (SIGKILL) when this process dies. Returns once the program runs: a missing
// program, or a failed exec or user switch, is an error naming it.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Forks a child that runs `child` and exits with what it returns; it is killed when this process
// dies. The child is a copy of this process with a single thread, so `child` may make only
// async-signal-safe calls (no malloc, no locks, no logging); it inherits every descriptor.
absl::StatusOr<pid_t> ForkChild(absl::FunctionRef<int()> child);

// "exited with status 1", "killed by signal 9".
std::string DescribeWaitStatus(int wait_status);

// A shell's view of a wait status: the exit status, or 128 + the signal that killed it.
int ExitCode(int wait_status);

// A child process this object owns: it is killed and reaped when the object is destroyed.
// Thread-safe.
class Subprocess {
 public:
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const SpawnOptions& options = {});
  // Owns the child `pid` (which must be this process's, and not reaped yet); `group`: signals go
  // to its process group.
  explicit Subprocess(pid_t pid, bool group = false);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }

  // Whether it still runs (reaps it if it has exited).
  bool Running();
  // Its wait status once it has exited, waiting up to `timeout`; DeadlineExceeded while it runs.
  absl::StatusOr<int> Wait(absl::Duration timeout = absl::InfiniteDuration());
  // The wait status, if it has been reaped.
  std::optional<int> wait_status();
  // Sends `sig` (to its process group if it has one); false once it has been reaped.
  bool Signal(int sig);
  // Sends `sig`, waits up to `grace` for the exit, then kills it; returns the wait status.
  int Stop(int sig = SIGTERM, absl::Duration grace = absl::Seconds(5));
  // SIGKILL (to the process group, if it has one), and reaps it. Any time, from any thread.
  void Kill();

 private:
  // Reaps the child if it has exited; true once it has been reaped.
  bool TryReap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const pid_t pid_;
  const bool group_;
  // A pidfd for the child (-1 where the kernel has none): readable once it exits.
  const int pidfd_;
  // Protects the reaping: once reaped, the pid may be reused, so no signal may follow.
  absl::Mutex mu_;
  std::optional<int> wait_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace autoscale
