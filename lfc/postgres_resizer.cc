#include "lfc/postgres_resizer.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::lfc {
namespace {

// libpq's messages end in newlines and may span lines; one line reads better inside a Status.
std::string OneLine(const char* message) {
  std::string text =
      absl::StrReplaceAll(message == nullptr ? "" : message, {{"\n", " "}, {"\t", ""}});
  absl::StripAsciiWhitespace(&text);
  return text;
}

bool IsIdentifier(std::string_view part) {
  if (part.empty() || !(absl::ascii_isalpha(part[0]) || part[0] == '_')) return false;
  for (char c : part) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '$')) return false;
  }
  return true;
}

// "name" or "prefix.name", as PostgreSQL accepts unquoted in ALTER SYSTEM SET.
bool IsSettingName(std::string_view name) {
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos) return IsIdentifier(name);
  return IsIdentifier(name.substr(0, dot)) && IsIdentifier(name.substr(dot + 1));
}

absl::StatusCode CodeForSqlState(std::string_view state) {
  if (state == "42501") return absl::StatusCode::kPermissionDenied;  // insufficient_privilege
  if (state == "57014") return absl::StatusCode::kDeadlineExceeded;  // query_canceled
  // connection_exception, and the server shutting down (admin/crash shutdown, cannot connect).
  if (state.substr(0, 2) == "08" || state.substr(0, 3) == "57P") {
    return absl::StatusCode::kUnavailable;
  }
  return absl::StatusCode::kFailedPrecondition;
}

struct ConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;

// When a SetSizeBytes call must be done, and its whole budget (for messages).
struct Deadline {
  absl::Time at;
  absl::Duration budget;
};

// Waits until the connection's socket is readable (or writable) or the deadline passes.
absl::Status Wait(PGconn* conn, bool for_write, const Deadline& deadline) {
  pollfd fd{.fd = PQsocket(conn),
            .events = static_cast<short>(for_write ? POLLOUT : POLLIN),
            .revents = 0};
  if (fd.fd < 0) return absl::UnavailableError("connection has no socket");
  for (;;) {
    const absl::Duration left = deadline.at - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("timed out after ", absl::FormatDuration(deadline.budget)));
    }
    const int64_t millis = std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60'000);
    const int r = poll(&fd, 1, static_cast<int>(millis));
    if (r > 0) return absl::OkStatus();
    if (r < 0 && errno != EINTR) {
      return absl::ErrnoToStatus(errno, "poll on the connection's socket");
    }
  }
}

absl::Status Connect(PGconn* conn, const Deadline& deadline) {
  PostgresPollingStatusType state = PGRES_POLLING_WRITING;
  for (;;) {
    if (state == PGRES_POLLING_OK) {
      // Non-blocking from here on, so sending a statement cannot block past the deadline.
      if (PQsetnonblocking(conn, 1) != 0) {
        return absl::UnavailableError(absl::StrCat("connect: ", OneLine(PQerrorMessage(conn))));
      }
      return absl::OkStatus();
    }
    if (state == PGRES_POLLING_FAILED) {
      return absl::UnavailableError(absl::StrCat("connect: ", OneLine(PQerrorMessage(conn))));
    }
    RETURN_IF_ERROR(Annotate(Wait(conn, state == PGRES_POLLING_WRITING, deadline), "connect"));
    state = PQconnectPoll(conn);
  }
}

// Connects to `conninfo` within `deadline`. `context` (what the caller is doing) gains
// " on user@host:port", never the credentials the connection string may hold; errors start with
// it.
absl::StatusOr<Conn> Open(const std::string& conninfo, const Deadline& deadline,
                          std::string& context) {
  const char* keys[] = {"dbname", nullptr};
  const char* values[] = {conninfo.c_str(), nullptr};
  Conn conn(PQconnectStartParams(keys, values, /*expand_dbname=*/1));
  if (conn == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(context, ": libpq is out of memory"));
  }
  absl::StrAppend(&context, " on ", PQuser(conn.get()) ? PQuser(conn.get()) : "", "@",
                  PQhost(conn.get()) ? PQhost(conn.get()) : "", ":",
                  PQport(conn.get()) ? PQport(conn.get()) : "");
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
    return absl::UnavailableError(
        absl::StrCat(context, ": connect: ", OneLine(PQerrorMessage(conn.get()))));
  }
  RETURN_IF_ERROR(Annotate(Connect(conn.get(), deadline), context));
  return conn;
}

// Runs one statement. On success returns the first column of the first row ("" if none).
absl::StatusOr<std::string> Execute(PGconn* conn, const std::string& sql, std::string_view label,
                                    const Deadline& deadline) {
  const std::string context(label);
  if (PQsendQuery(conn, sql.c_str()) != 1) {
    return absl::UnavailableError(absl::StrCat(context, ": ", OneLine(PQerrorMessage(conn))));
  }
  for (;;) {
    const int r = PQflush(conn);
    if (r == 0) break;
    if (r < 0) {
      return absl::UnavailableError(absl::StrCat(context, ": ", OneLine(PQerrorMessage(conn))));
    }
    RETURN_IF_ERROR(Annotate(Wait(conn, /*for_write=*/true, deadline), context));
  }
  absl::Status status;
  std::string value;
  for (;;) {
    while (PQisBusy(conn)) {
      RETURN_IF_ERROR(Annotate(Wait(conn, /*for_write=*/false, deadline), context));
      if (PQconsumeInput(conn) != 1) {
        return absl::UnavailableError(absl::StrCat(context, ": ", OneLine(PQerrorMessage(conn))));
      }
    }
    PGresult* result = PQgetResult(conn);
    if (result == nullptr) break;
    const ExecStatusType type = PQresultStatus(result);
    if (type == PGRES_TUPLES_OK && PQntuples(result) > 0 && PQnfields(result) > 0) {
      value = PQgetvalue(result, 0, 0);
    } else if (type != PGRES_COMMAND_OK && type != PGRES_TUPLES_OK && status.ok()) {
      const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
      status = absl::Status(CodeForSqlState(state == nullptr ? "" : state),
                            absl::StrCat(context, ": ", OneLine(PQresultErrorMessage(result))));
    }
    PQclear(result);
  }
  if (!status.ok()) return status;
  return value;
}

// A size setting's value in MiB, as current_setting() shows it: "512" (a setting without a unit,
// such as a placeholder, is taken as MB) or "512MB", "1GB", "8192kB", "1TB".
absl::StatusOr<uint64_t> ParseMiB(absl::string_view text, absl::string_view setting) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  uint64_t n = 0;
  absl::string_view unit = text.substr(digits);
  if (digits == 0 || digits > 15 || !absl::SimpleAtoi(text.substr(0, digits), &n)) {
    return absl::FailedPreconditionError(
        absl::StrCat(setting, " is \"", text, "\", not a size in MB"));
  }
  if (unit.empty() || unit == "MB") return n;
  if (unit == "kB") return n / 1024;
  if (unit == "GB") return n << 10;
  if (unit == "TB") return n << 20;
  return absl::FailedPreconditionError(
      absl::StrCat(setting, " is \"", text, "\", not a size in MB"));
}

// A positive timeout and a connection string libpq can parse; errors start with `context`.
absl::Status CheckConnection(const std::string& conninfo, absl::Duration timeout,
                             absl::string_view context) {
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": timeout must be positive, got ", absl::FormatDuration(timeout)));
  }
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (parsed == nullptr) {
    const std::string message = error != nullptr ? OneLine(error) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(absl::StrCat(context, ": bad connection string: ", message));
  }
  PQconninfoFree(parsed);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresResizer>> PostgresResizer::Create(
    PostgresResizerOptions options) {
  if (!IsSettingName(options.setting) ||
      (!options.max_setting.empty() && !IsSettingName(options.max_setting))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lfc postgres resizer: setting \"", options.setting, "\" or \"", options.max_setting,
        "\" is not a setting name (an identifier, optionally prefix.name)"));
  }
  RETURN_IF_ERROR(CheckConnection(options.conninfo, options.timeout, "lfc postgres resizer"));
  return std::unique_ptr<PostgresResizer>(new PostgresResizer(std::move(options)));
}

absl::Status PostgresResizer::SetSizeBytes(uint64_t bytes) {
  const Deadline deadline{absl::Now() + options_.timeout, options_.timeout};
  uint64_t mib = bytes >> 20;
  std::string context =
      absl::StrCat("lfc postgres resize to ", mib, " MiB (", options_.setting, ")");
  ASSIGN_OR_RETURN(Conn conn, Open(options_.conninfo, deadline, context));
  if (!options_.max_setting.empty()) {
    // NULL (read as "") when the server does not have the setting: no cap then.
    absl::StatusOr<std::string> max = Execute(
        conn.get(), absl::StrCat("SELECT current_setting('", options_.max_setting, "', true)"),
        "reading " + options_.max_setting, deadline);
    if (!max.ok()) return Annotate(max.status(), context);
    if (!max->empty()) {
      absl::StatusOr<uint64_t> max_mib = ParseMiB(*max, options_.max_setting);
      if (!max_mib.ok()) return Annotate(max_mib.status(), context);
      if (mib > *max_mib) {
        mib = *max_mib;
        absl::StrAppend(&context, ", capped at ", mib, " MiB by ", options_.max_setting);
      }
    }
  }
  RETURN_IF_ERROR(Annotate(
      Execute(conn.get(), absl::StrCat("ALTER SYSTEM SET ", options_.setting, " = '", mib, "'"),
              "ALTER SYSTEM", deadline)
          .status(),
      context));
  absl::StatusOr<std::string> reloaded =
      Execute(conn.get(), "SELECT pg_reload_conf()", "pg_reload_conf()", deadline);
  if (!reloaded.ok()) return Annotate(reloaded.status(), context);
  if (*reloaded != "t") {
    return absl::FailedPreconditionError(
        absl::StrCat(context, ": pg_reload_conf() returned ", *reloaded, ", not true"));
  }
  return absl::OkStatus();
}

absl::Status CheckPostgresWorkingSetOptions(const PostgresWorkingSetOptions& options) {
  const std::string context = absl::StrCat("lfc working set from ", options.function, "()");
  if (!IsSettingName(options.function)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": not a function name (an identifier, optionally schema.name)"));
  }
  return CheckConnection(options.conninfo, options.timeout, context);
}

absl::StatusOr<std::vector<double>> ReadPostgresWorkingSet(
    const PostgresWorkingSetOptions& options) {
  RETURN_IF_ERROR(CheckPostgresWorkingSetOptions(options));
  std::string context = absl::StrCat("lfc working set from ", options.function, "()");
  const Deadline deadline{absl::Now() + options.timeout, options.timeout};
  ASSIGN_OR_RETURN(Conn conn, Open(options.conninfo, deadline, context));
  // One row: the 60 windows, comma-separated, shortest first.
  absl::StatusOr<std::string> row =
      Execute(conn.get(),
              absl::StrCat("SELECT string_agg(coalesce(", options.function,
                           "(m * 60), 0)::text, ',' ORDER BY m) FROM generate_series(1, 60) AS m"),
              "SELECT", deadline);
  if (!row.ok()) return Annotate(row.status(), context);
  std::vector<double> windows;
  for (absl::string_view v : absl::StrSplit(*row, ',')) {
    double pages;
    if (!absl::SimpleAtod(v, &pages) || !std::isfinite(pages) || pages < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          context, ": window ", windows.size() + 1, " is \"", v, "\", not a number of pages >= 0"));
    }
    windows.push_back(pages);
  }
  return windows;
}

}  // namespace autoscale::lfc
