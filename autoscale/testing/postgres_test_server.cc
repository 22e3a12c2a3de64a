#include "autoscale/testing/postgres_test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::testing {
namespace {

// Who the server runs as: ourselves, or (as root) an unprivileged user.
struct RunAs {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

absl::StatusOr<RunAs> ServerUser() {
  if (geteuid() != 0) return RunAs{};
  passwd entry;
  passwd* found = nullptr;
  char buffer[4096];
  if (getpwnam_r("nobody", &entry, buffer, sizeof(buffer), &found) != 0 || found == nullptr) {
    return absl::FailedPreconditionError(
        "postgres test server: running as root, and there is no user \"nobody\" to run "
        "PostgreSQL as (it refuses to run as root)");
  }
  return RunAs{true, entry.pw_uid, entry.pw_gid};
}

std::string LogTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string log = text.str();
  constexpr size_t kTail = 2000;
  return log.size() > kTail ? log.substr(log.size() - kTail) : log;
}

// Starts argv[0] with stdout and stderr appended to `log_path`, in its own process group, as
// `who`, killed by the kernel if this thread dies.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path,
                            const RunAs& who) {
  // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char locale_env[] = "LC_ALL=C";
  char* env[] = {path_env, locale_env, nullptr};
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", log_path));
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    close(log_fd);
    return absl::ErrnoToStatus(errno, "open /dev/null");
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(126);
    if (who.drop && (setgroups(0, nullptr) != 0 || setgid(who.gid) != 0 || setuid(who.uid) != 0)) {
      _exit(126);
    }
    // After setuid, which clears it. The check closes the race with a parent that died already.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    execve(args[0], args.data(), env);
    _exit(127);
  }
  const int fork_errno = errno;
  close(log_fd);
  close(null_fd);
  if (pid < 0) return absl::ErrnoToStatus(fork_errno, absl::StrCat("fork for ", argv[0]));
  return pid;
}

// The child's wait status once it has exited, or DeadlineExceeded (it is left running).
absl::StatusOr<int> WaitExit(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return absl::ErrnoToStatus(errno, absl::StrCat("waitpid ", pid));
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid, " still running after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  close(fd);
  if (!ok) return absl::ErrnoToStatus(error, "bind 127.0.0.1:0 to find a free port");
  return ntohs(address.sin_port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresTestServer>> PostgresTestServer::Start(Options options) {
  const std::string initdb = options.bin_dir + "/initdb";
  const std::string postgres = options.bin_dir + "/postgres";
  for (const std::string& binary : {initdb, postgres}) {
    if (access(binary.c_str(), X_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("PostgreSQL binary ", binary, " is missing (install postgresql-15)"));
    }
  }
  ASSIGN_OR_RETURN(const RunAs who, ServerUser());
  ASSIGN_OR_RETURN(const int port, FreePort());
  char dir_template[] = "/tmp/lfc-pg-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::ErrnoToStatus(errno, "postgres test server: mkdtemp /tmp/lfc-pg-XXXXXX");
  }
  // From here on the destructor removes the directory.
  std::unique_ptr<PostgresTestServer> server(new PostgresTestServer(dir_template, port));
  const std::string& dir = server->dir_;
  if (who.drop && chown(dir.c_str(), who.uid, who.gid) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("postgres test server: chown ", dir));
  }
  const std::string data = dir + "/data";

  const std::string initdb_log = dir + "/initdb.log";
  ASSIGN_OR_RETURN(const pid_t initdb_pid,
                   Spawn({initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                          "--locale=C", "--no-sync", "--no-instructions"},
                         initdb_log, who));
  absl::StatusOr<int> exit_status = WaitExit(initdb_pid, options.start_timeout);
  if (!exit_status.ok()) {
    kill(-initdb_pid, SIGKILL);
    waitpid(initdb_pid, nullptr, 0);
  }
  if (!exit_status.ok() || !WIFEXITED(*exit_status) || WEXITSTATUS(*exit_status) != 0) {
    return absl::InternalError(absl::StrCat("postgres test server: initdb in ", data, " failed (",
                                            exit_status.ok()
                                                ? absl::StrCat("wait status ", *exit_status)
                                                : exit_status.status().ToString(),
                                            "): ", LogTail(initdb_log)));
  }
  {
    std::ofstream conf(data + "/postgresql.conf", std::ios::app);
    for (const std::string& line : options.config_lines) conf << line << "\n";
    if (!conf.flush()) {
      return absl::InternalError(
          absl::StrCat("postgres test server: append to ", data, "/postgresql.conf failed"));
    }
  }

  const std::string server_log = dir + "/server.log";
  ASSIGN_OR_RETURN(server->pid_, Spawn({postgres, "-D", data, "-p", absl::StrCat(port), "-k", dir,
                                        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                                        "max_connections=20", "-c", "shared_buffers=16MB"},
                                       server_log, who));
  const absl::Time deadline = absl::Now() + options.start_timeout;
  const std::string conninfo = server->SocketConnInfo();
  for (;;) {
    if (PQping(conninfo.c_str()) == PQPING_OK) return server;
    int status = 0;
    if (waitpid(server->pid_, &status, WNOHANG) == server->pid_) {
      server->pid_ = 0;
      return absl::InternalError(absl::StrCat("postgres test server: postgres in ", data,
                                              " exited (wait status ", status,
                                              "): ", LogTail(server_log)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "postgres test server: postgres in ", data, " not accepting connections after ",
          absl::FormatDuration(options.start_timeout), ": ", LogTail(server_log)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void PostgresTestServer::Stop() {
  if (pid_ == 0) return;
  kill(pid_, SIGINT);   // fast shutdown
  kill(pid_, SIGCONT);  // in case a test left it stopped
  if (!WaitExit(pid_, absl::Seconds(10)).ok()) {
    LOG(WARNING) << "postgres test server " << pid_ << " ignored fast shutdown; killing it";
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_ = 0;
}

PostgresTestServer::~PostgresTestServer() {
  Stop();
  std::error_code error;
  std::filesystem::remove_all(dir_, error);
  if (error) LOG(WARNING) << "postgres test server: remove " << dir_ << ": " << error.message();
}

std::string PostgresTestServer::ConnInfo(std::string_view user) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " dbname=postgres connect_timeout=10 user=",
                      absl::string_view(user.data(), user.size()));
}

std::string PostgresTestServer::SocketConnInfo(std::string_view user) const {
  return absl::StrCat("host=", dir_, " port=", port_, " dbname=postgres connect_timeout=10 user=",
                      absl::string_view(user.data(), user.size()));
}

}  // namespace autoscale::testing
