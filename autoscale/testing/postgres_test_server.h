// A private PostgreSQL server for tests: initdb in a fresh directory under /tmp (short,
// so the unix socket path fits), started on a free 127.0.0.1 port and a unix socket in that
// directory, trust authentication, superuser "postgres". It is stopped and its directory removed
// when the object is destroyed; if the test process dies first, the kernel kills the server
// (parent-death signal). As root, initdb and postgres run as the user "nobody", since PostgreSQL
// refuses to run as root.
//
//   AUTOSCALE_REQUIRE_POSTGRES();   // skips when the PostgreSQL binaries are missing
//   absl::StatusOr<std::unique_ptr<PostgresTestServer>> pg = PostgresTestServer::Start({});
//   ASSERT_TRUE(pg.ok()) << pg.status();
//   PGconn* c = PQconnectdb((*pg)->ConnInfo().c_str());
#pragma once

#include <libpq-fe.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/base/subprocess.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"

#define AUTOSCALE_REQUIRE_POSTGRES() AUTOSCALE_REQUIRE(::autoscale::testing::PostgresMissing())

namespace autoscale::testing {

// Empty when initdb and postgres are in `bin_dir`; otherwise what is missing.
std::string PostgresMissing(const std::string& bin_dir = "/usr/lib/postgresql/15/bin");

// Runs `sql` (one or more statements) on a new connection to `conninfo`, or on `conn`: the first
// column of the last statement's first row; "" when it returns no rows; "error: " and libpq's
// message when it fails (so a comparison with an expected value fails, and shows why).
std::string QueryOne(const std::string& conninfo, const std::string& sql);
std::string QueryOne(PGconn* conn, const std::string& sql);

class PostgresTestServer {
 public:
  struct Options {
    // Where initdb and postgres are (Debian's PostgreSQL 15).
    std::string bin_dir = "/usr/lib/postgresql/15/bin";
    // Lines appended to postgresql.conf, e.g. "neon.file_cache_size_limit = 0".
    std::vector<std::string> config_lines;
    // Bounds initdb, and the start until the server accepts connections.
    absl::Duration start_timeout = absl::Seconds(60);
  };

  // NotFound (naming the path) when the PostgreSQL binaries are missing; other errors include the
  // tail of initdb's or the server's log.
  static absl::StatusOr<std::unique_ptr<PostgresTestServer>> Start(Options options);
  ~PostgresTestServer();
  PostgresTestServer(const PostgresTestServer&) = delete;
  PostgresTestServer& operator=(const PostgresTestServer&) = delete;

  // Fast shutdown (SIGINT to the server's process group); SIGKILL to the group if it has not
  // exited in 10 s. Idempotent.
  void Stop();

  // Connection strings for `user` to database "postgres": over TCP, and over the unix socket.
  std::string ConnInfo(std::string_view user = "postgres") const;
  std::string SocketConnInfo(std::string_view user = "postgres") const;

  int port() const { return port_; }
  // The postmaster's pid (0 once stopped); its process group has the same id.
  pid_t pid() const { return process_ == nullptr ? 0 : process_->pid(); }
  const std::string& dir() const { return dir_.path(); }

 private:
  explicit PostgresTestServer(int port) : dir_("lfc-pg"), port_(port) {}

  const TempDir dir_;
  const int port_;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace autoscale::testing
