#include "autoscale/testing/postgres_test_server.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/testing/free_port.h"
#include "glog/logging.h"

namespace autoscale::testing {
namespace {

// Who the server runs as: ourselves, or (as root) an unprivileged user, since PostgreSQL refuses
// to run as root.
absl::StatusOr<std::optional<SpawnOptions::User>> ServerUser() {
  if (geteuid() != 0) return std::nullopt;
  passwd entry;
  passwd* found = nullptr;
  char buffer[4096];
  if (getpwnam_r("nobody", &entry, buffer, sizeof(buffer), &found) != 0 || found == nullptr) {
    return absl::FailedPreconditionError(
        "postgres test server: running as root, and there is no user \"nobody\" to run "
        "PostgreSQL as (it refuses to run as root)");
  }
  return SpawnOptions::User{entry.pw_uid, entry.pw_gid};
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
// `user`, with a fixed environment.
absl::StatusOr<std::unique_ptr<Subprocess>> StartProgram(
    const std::vector<std::string>& argv, const std::string& log_path,
    const std::optional<SpawnOptions::User>& user) {
  SpawnOptions options;
  options.output_file = log_path;
  options.env = std::vector<std::string>{"PATH=/usr/bin:/bin", "LC_ALL=C"};
  options.new_process_group = true;
  options.user = user;
  return Subprocess::Start(argv, options);
}

}  // namespace

std::string PostgresMissing(const std::string& bin_dir) {
  for (const char* binary : {"initdb", "postgres"}) {
    const std::string path = bin_dir + "/" + binary;
    if (access(path.c_str(), X_OK) != 0) {
      return absl::StrCat("PostgreSQL binary ", path, " is missing (install postgresql-15)");
    }
  }
  return "";
}

absl::StatusOr<std::unique_ptr<PostgresTestServer>> PostgresTestServer::Start(Options options) {
  if (std::string why = PostgresMissing(options.bin_dir); !why.empty()) {
    return absl::NotFoundError(why);
  }
  const std::string initdb = options.bin_dir + "/initdb";
  const std::string postgres = options.bin_dir + "/postgres";
  ASSIGN_OR_RETURN(const std::optional<SpawnOptions::User> user, ServerUser());
  ASSIGN_OR_RETURN(const int port, FreePort());
  // The destructor removes the directory.
  std::unique_ptr<PostgresTestServer> server(new PostgresTestServer(port));
  const std::string& dir = server->dir();
  if (user.has_value() && chown(dir.c_str(), user->uid, user->gid) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("postgres test server: chown ", dir));
  }
  const std::string data = dir + "/data";

  const std::string initdb_log = dir + "/initdb.log";
  ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> initdb_process,
                   StartProgram({initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                 "--locale=C", "--no-sync", "--no-instructions"},
                                initdb_log, user));
  absl::StatusOr<int> exit_status = initdb_process->Wait(options.start_timeout);
  if (!exit_status.ok() || !WIFEXITED(*exit_status) || WEXITSTATUS(*exit_status) != 0) {
    return absl::InternalError(absl::StrCat(
        "postgres test server: initdb in ", data, " failed (",
        exit_status.ok() ? DescribeWaitStatus(*exit_status) : exit_status.status().ToString(),
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
  ASSIGN_OR_RETURN(server->process_,
                   StartProgram({postgres, "-D", data, "-p", absl::StrCat(port), "-k", dir, "-c",
                                 "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                                 "max_connections=20", "-c", "shared_buffers=16MB"},
                                server_log, user));
  const absl::Time deadline = absl::Now() + options.start_timeout;
  const std::string conninfo = server->SocketConnInfo();
  for (;;) {
    if (PQping(conninfo.c_str()) == PQPING_OK) return server;
    if (!server->process_->Running()) {
      return absl::InternalError(absl::StrCat("postgres test server: postgres in ", data, " ",
                                              DescribeWaitStatus(*server->process_->wait_status()),
                                              ": ", LogTail(server_log)));
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
  if (process_ == nullptr) return;
  process_->Signal(SIGCONT);  // in case a test left it stopped
  // Fast shutdown; SIGKILL to the process group after 10 s.
  const int status = process_->Stop(SIGINT, absl::Seconds(10));
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
    LOG(WARNING) << "postgres test server " << process_->pid()
                 << " ignored fast shutdown; killed it";
  }
  process_.reset();
}

PostgresTestServer::~PostgresTestServer() { Stop(); }

std::string PostgresTestServer::ConnInfo(std::string_view user) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " dbname=postgres connect_timeout=10 user=",
                      absl::string_view(user.data(), user.size()));
}

std::string PostgresTestServer::SocketConnInfo(std::string_view user) const {
  return absl::StrCat("host=", dir(), " port=", port_, " dbname=postgres connect_timeout=10 user=",
                      absl::string_view(user.data(), user.size()));
}

std::string QueryOne(PGconn* conn, const std::string& sql) {
  std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(conn, sql.c_str()), &PQclear);
  const ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK) return "";
  if (status != PGRES_TUPLES_OK) return absl::StrCat("error: ", sql, ": ", PQerrorMessage(conn));
  return PQntuples(result.get()) < 1 ? "" : PQgetvalue(result.get(), 0, 0);
}

std::string QueryOne(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::StrCat("error: connect: ", PQerrorMessage(conn.get()));
  }
  return QueryOne(conn.get(), sql);
}

}  // namespace autoscale::testing
