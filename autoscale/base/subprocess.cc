#include "autoscale/base/subprocess.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

extern char** environ;

namespace autoscale {
namespace {

constexpr unsigned kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC (Linux 5.11)

// execve needs a path: look `program` up in PATH the way execvp would, before forking.
absl::StatusOr<std::string> FindProgram(const std::string& program) {
  if (program.empty()) return absl::InvalidArgumentError("spawn: no program given");
  if (program.find('/') != std::string::npos) {
    if (access(program.c_str(), X_OK) == 0) return program;
    return absl::ErrnoToStatus(errno, absl::StrCat("program ", program));
  }
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(absl::StrCat("program ", program, " not found in PATH"));
}

// Runs every fork on one thread that never ends (see the header: the death signal follows the
// forking thread). The thread blocks every signal, so that it never takes one meant for a
// daemon's own signal handling.
class Spawner {
 public:
  static Spawner& Get() {
    static Spawner* spawner = new Spawner();  // Never destroyed: its thread runs until exit.
    return *spawner;
  }

  // Runs `fork` on the spawner thread and returns when it has.
  void Run(absl::FunctionRef<void()> fork) {
    Job job{fork};
    absl::MutexLock lock(&mu_);
    jobs_.push_back(&job);
    mu_.Await(absl::Condition(&job.done));
  }

 private:
  struct Job {
    absl::FunctionRef<void()> fork;
    bool done = false;
  };

  Spawner() {
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    while (true) {
      Job* job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](std::deque<Job*>* jobs) { return !jobs->empty(); }, &jobs_));
        job = jobs_.front();
        jobs_.pop_front();
      }
      job->fork();
      absl::MutexLock lock(&mu_);
      job->done = true;
    }
  }

  absl::Mutex mu_;
  std::deque<Job*> jobs_ ABSL_GUARDED_BY(mu_);
};

// In a child between fork and exec: the death signal, armed at once, and the check that closes
// the race with a parent that died before it was armed.
void DieWithParent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
}

// What a child that failed before its program ran reports through the error pipe.
enum class Step : int { kProcessGroup, kRedirect, kUser, kNetns, kExec };
struct ChildError {
  Step step;
  int error;
};

std::string StepText(Step step) {
  switch (step) {
    case Step::kProcessGroup:
      return "setpgid";
    case Step::kRedirect:
      return "redirecting stdin, stdout and stderr";
    case Step::kUser:
      return "switching user";
    case Step::kNetns:
      return "entering the network namespace";
    case Step::kExec:
      return "exec";
  }
  return "?";
}

void CloseIfOpen(int fd) {
  if (fd >= 0) close(fd);
}

}  // namespace

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  absl::StatusOr<std::string> program = FindProgram(argv[0]);
  if (!program.ok()) return program.status();

  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  if (options.env.has_value()) {
    for (const std::string& e : *options.env) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return absl::ErrnoToStatus(errno, "open /dev/null");
  int out_fd = options.output_fd;
  int own_out_fd = -1;
  if (out_fd < 0 && !options.output_file.empty()) {
    own_out_fd = out_fd =
        open(options.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) {
      const int err = errno;
      close(null_fd);
      return absl::ErrnoToStatus(err, absl::StrCat("open ", options.output_file));
    }
  }
  // The child reports a failure before its program runs through this pipe; exec closes it.
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(null_fd);
    CloseIfOpen(own_out_fd);
    return absl::ErrnoToStatus(err, "pipe2");
  }
  const pid_t parent = getpid();
  pid_t pid = -1;
  int fork_errno = 0;
  Spawner::Get().Run([&] {
    pid = fork();
    fork_errno = errno;
    if (pid != 0) return;
    auto fail = [&](Step step) {
      ChildError e{step, errno};
      ssize_t ignored = write(error_pipe[1], &e, sizeof(e));
      (void)ignored;
      _exit(127);
    };
    if (options.new_process_group && setpgid(0, 0) != 0) fail(Step::kProcessGroup);
    if (options.netns_fd >= 0 && setns(options.netns_fd, CLONE_NEWNET) != 0) fail(Step::kNetns);
    if (dup2(null_fd, 0) < 0) fail(Step::kRedirect);
    if (out_fd >= 0 && (dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)) fail(Step::kRedirect);
    if (options.user.has_value() && (setgroups(0, nullptr) != 0 || setgid(options.user->gid) != 0 ||
                                     setuid(options.user->uid) != 0)) {
      fail(Step::kUser);
    }
    // After setuid, which clears it.
    DieWithParent(parent);
    // Whatever else this process has open (sockets, other children's pipes) must not leak into
    // the program. Marked close-on-exec rather than closed, so the error pipe works until exec.
    syscall(SYS_close_range, 3, ~0U, kCloseRangeCloexec);
    for (int fd : options.inherit_fds) {
      if (fcntl(fd, F_SETFD, 0) != 0) fail(Step::kRedirect);
    }
    // The spawner thread blocks every signal, and this process may have handlers or ignore
    // some (SIGPIPE): the program starts with the defaults.
    struct sigaction default_action = {};
    default_action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &default_action, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(program->c_str(), args.data(), options.env.has_value() ? env.data() : environ);
    fail(Step::kExec);
  });
  close(null_fd);
  CloseIfOpen(own_out_fd);
  close(error_pipe[1]);
  if (pid < 0) {
    close(error_pipe[0]);
    return absl::ErrnoToStatus(fork_errno, absl::StrCat("fork for ", argv[0]));
  }
  ChildError error;
  ssize_t n;
  do {
    n = read(error_pipe[0], &error, sizeof(error));
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n == sizeof(error)) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return absl::ErrnoToStatus(error.error, absl::StrCat(StepText(error.step), " ", *program));
  }
  return pid;
}

absl::StatusOr<pid_t> ForkChild(absl::FunctionRef<int()> child) {
  const pid_t parent = getpid();
  pid_t pid = -1;
  int fork_errno = 0;
  Spawner::Get().Run([&] {
    pid = fork();
    fork_errno = errno;
    if (pid != 0) return;
    DieWithParent(parent);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    _exit(child());
  });
  if (pid < 0) return absl::ErrnoToStatus(fork_errno, "fork");
  return pid;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended with wait status ", status);
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(const std::vector<std::string>& argv,
                                                              const SpawnOptions& options) {
  absl::StatusOr<pid_t> pid = Spawn(argv, options);
  if (!pid.ok()) return pid.status();
  return std::make_unique<Subprocess>(*pid, options.new_process_group);
}

Subprocess::Subprocess(pid_t pid, bool group)
    : pid_(pid), group_(group), pidfd_(static_cast<int>(syscall(SYS_pidfd_open, pid, 0))) {}

Subprocess::~Subprocess() {
  Kill();
  if (pidfd_ >= 0) close(pidfd_);
}

bool Subprocess::TryReap() {
  if (wait_status_.has_value()) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    wait_status_ = status;
    return true;
  }
  if (r < 0) {  // Not our child any more: someone else reaped it.
    wait_status_ = -1;
    return true;
  }
  return false;
}

bool Subprocess::Running() {
  absl::MutexLock lock(&mu_);
  return !TryReap();
}

std::optional<int> Subprocess::wait_status() {
  absl::MutexLock lock(&mu_);
  return wait_status_;
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (TryReap()) return *wait_status_;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running after ", absl::FormatDuration(timeout)));
    }
    const int ms =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(left), 1, int64_t{1000}));
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      poll(&p, 1, ms);
    } else {
      absl::SleepFor(absl::Milliseconds(std::min(ms, 5)));
    }
  }
}

bool Subprocess::Signal(int sig) {
  absl::MutexLock lock(&mu_);
  // Unreaped, the pid (and the process group's id) cannot have been reused.
  if (wait_status_.has_value()) return false;
  kill(group_ ? -pid_ : pid_, sig);
  return true;
}

int Subprocess::Stop(int sig, absl::Duration grace) {
  if (Signal(sig)) {
    if (absl::StatusOr<int> status = Wait(grace); status.ok()) return *status;
    Kill();
  }
  return *wait_status();
}

void Subprocess::Kill() {
  absl::MutexLock lock(&mu_);
  if (wait_status_.has_value()) return;
  kill(group_ ? -pid_ : pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      status = -1;
      break;
    }
  }
  wait_status_ = status;
}

}  // namespace autoscale
