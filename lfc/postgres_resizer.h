// A LfcResizer (resizer.h) for PostgreSQL's Local File Cache: sets the cache size setting with
// `ALTER SYSTEM SET <setting> = '<MiB>'` and applies it with `SELECT pg_reload_conf()`, as Neon's
// vm-monitor does. The default setting is Neon's `neon.file_cache_size_limit` (in MB). The
// setting must be known to the server: Neon's extension defines it; on a vanilla PostgreSQL 15 a
// line `neon.file_cache_size_limit = 0` in postgresql.conf declares it (ALTER SYSTEM rejects a
// custom setting the server has not seen before PostgreSQL 17; a `-c` on the command line would
// override the value written by ALTER SYSTEM).
//
//   ASSIGN_OR_RETURN(auto resizer, PostgresResizer::Create({
//       .conninfo = "host=localhost port=5432 dbname=postgres user=cloud_admin"}));
//   absl::Status s = resizer->SetSizeBytes(CacheSizeBytes(memory));
//   // s: OK, or e.g. PermissionDenied "lfc postgres resize to 512 MiB (neon.file_cache_size_limit)
//   // on cloud_admin@localhost:5432: ALTER SYSTEM: ERROR: permission denied to set parameter ..."
//
// Each call opens its own connection (resizes are rare), so a server restart between calls does
// not matter, and the resizer may be used from any thread. The whole call, connecting included,
// is bounded by `timeout`. The user must be a superuser or hold ALTER SYSTEM on the setting.
// This header does not include libpq.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lfc/resizer.h"

namespace autoscale::lfc {

struct PostgresResizerOptions {
  // A libpq connection string or URI. Credentials in it never appear in error messages.
  std::string conninfo;
  // The setting that holds the cache size in MB: an identifier, optionally dotted.
  std::string setting = "neon.file_cache_size_limit";
  // The setting that bounds it (Neon's check hook rejects a larger size, and the ALTER SYSTEM
  // fails): sizes are capped at its value when the server has it. Empty: no cap.
  std::string max_setting = "neon.max_file_cache_size";
  // Bounds one SetSizeBytes call. A host name is resolved before this timer starts.
  absl::Duration timeout = absl::Seconds(10);
};

class PostgresResizer final : public LfcResizer {
 public:
  // InvalidArgument for a malformed conninfo or setting name, or a timeout that is not positive.
  // Does not connect.
  static absl::StatusOr<std::unique_ptr<PostgresResizer>> Create(PostgresResizerOptions options);

  // Sets the setting to bytes / MiB (rounded down), at most max_setting's value, and reloads the
  // configuration. A max_setting value that is not a size is an error. Errors name the
  // size, setting and server (user@host:port) and carry the server's message. Codes:
  // Unavailable (cannot connect, connection lost, login refused), PermissionDenied (the user may
  // not change the setting), DeadlineExceeded (timeout; the change may or may not have been
  // made), FailedPrecondition (any other refusal, e.g. a setting the server does not know).
  absl::Status SetSizeBytes(uint64_t bytes) override;

 private:
  explicit PostgresResizer(PostgresResizerOptions options) : options_(std::move(options)) {}

  const PostgresResizerOptions options_;
};

// The LFC's working-set windows as Neon's compute reports them: `function`(60 * i) for i = 1..60,
// the distinct pages (8 KiB) touched in the last i minutes, Neon's
// neon.approximate_working_set_size_seconds. The monitor sends them to the agent for the core's
// LFC goal (--lfc_windows_function). A NULL (no estimate yet) reads as 0.
struct PostgresWorkingSetOptions {
  // A libpq connection string or URI. Credentials in it never appear in error messages.
  std::string conninfo;
  // A function of one integer (seconds) returning a number of pages: an identifier, optionally
  // schema.name.
  std::string function = "neon.approximate_working_set_size_seconds";
  // Bounds one call, connecting included.
  absl::Duration timeout = absl::Seconds(2);
};

// One query on a connection of its own (made each call: a restarted server does not matter, and
// any thread may call; the monitor calls it from an agent session's sender thread, never from its
// event loop). Errors name the function and the server (user@host:port) and carry the server's
// message; codes as PostgresResizer's. InvalidArgument for a malformed option (nothing is sent).
absl::StatusOr<std::vector<double>> ReadPostgresWorkingSet(
    const PostgresWorkingSetOptions& options);
// The checks ReadPostgresWorkingSet makes before it connects (a daemon makes them at start).
absl::Status CheckPostgresWorkingSetOptions(const PostgresWorkingSetOptions& options);

}  // namespace autoscale::lfc
