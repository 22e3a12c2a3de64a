// A live migration seen from its source, as an explicit state machine whose every path leaves at
// most one running copy of the VM, and one whenever one can be kept.
//
// The rule is the point of no return: the moment the source has handed its device state over.
// Before it (setup, precopy), the source is the VM and the target holds a partial copy that cannot
// run; after it (postcopy, or completion), the target is the VM and the source holds a copy that
// is stale the moment the target runs. So:
//
//   phase        what ends it                 on failure
//   -----------  ---------------------------  ---------------------------------------------------
//   kStarting    `migrate` accepted           target stopped (Abandon); the source never paused
//   kPrecopy     postcopy-active, completed,  migrate_cancel (only here, and only at the timeout);
//                failed, cancelled            target stopped first, then the source resumed if it
//                                             was running before the migration (never otherwise)
//   kPostcopy    completed, failed, paused    no cancel, no timeout, query errors retried; a
//                                             failure loses the VM (kLost): the source is not
//                                             resumed, it is left paused
//   kCompleted   the target says it runs it   Commit asked again until answered: OK -> the source
//                                             quits; "not running, stopped" -> the source resumes
//                                             (precopy only; after postcopy the VM is lost)
//
// Commands whose answer was lost (a QMP timeout) leave the state unknown; the next query-migrate
// tells. A migration found in progress or completed on the source (its controller restarted) is
// taken up where it is. Under TCG, precopy of a guest that keeps writing loses writes (QEMU
// 10.0.2, migration.h); choosing postcopy there is the caller's (autoscale/agent does).
//
//   LocalTarget target(*incoming_vm, uri);
//   MigrationResult r = RunMigration(*source, target, options);
//   switch (r.outcome) { case Outcome::kMigrated: ... }
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/migration/source.h"

namespace autoscale::neonvm::migration {

// The other side of a migration, wherever it runs (this process, or another node's agent).
class Target {
 public:
  virtual ~Target() = default;
  // Where the source sends the VM.
  virtual const std::string& uri() const = 0;
  // The migration ends before the point of no return: stop the target's copy. OK once it no
  // longer runs (also when it never did, or is unknown there). Any error: not known; asked again.
  virtual absl::Status Abandon(const std::string& why) = 0;
  // The source has completed: the target runs the VM from now on (`expect_running`: it ran on
  // the source, so it must run, not stay paused). OK: it runs it and is taken over.
  // FAILED_PRECONDITION or NOT_FOUND: it does not run it and its copy is stopped (the source may
  // resume). Any other error: not known; asked again.
  virtual absl::Status Commit(bool expect_running) = 0;
};

enum class Phase {
  kStarting,
  kPrecopy,
  kPostcopy,
  kCompleted,
};
const char* PhaseName(Phase phase);

enum class Outcome {
  // The target runs the VM; the source was quit.
  kMigrated,
  // The source is the VM (running again if it ran before); the target's copy is stopped.
  kStayed,
  // No copy can run it: the target failed after the point of no return (or did not take over a
  // postcopy migration). The source is left paused; it holds the VM as it was at the switch.
  kLost,
  // Stopped by `interrupted` before an outcome; nothing was decided. Run it again (it takes the
  // migration up where QEMU has it).
  kInterrupted,
};
const char* OutcomeName(Outcome outcome);

struct MigrationResult {
  Outcome outcome = Outcome::kInterrupted;
  // Why, when the outcome is not kMigrated (a note when it is, e.g. a source that did not quit).
  absl::Status error;
  // The phase reached.
  Phase phase = Phase::kStarting;
  // What QEMU reported at completion.
  MigrationStats stats;
  // Whether the source ran before the migration.
  bool source_was_running = false;
};

struct RetryOptions {
  // Between attempts of what must be retried (a query after the point of no return, Abandon,
  // Commit): from `min` doubling to `max`.
  absl::Duration min = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(5);
  // How long Abandon is retried before the source is resumed anyway, when the target cannot have
  // run the VM (no device state was sent); with device state sent it is retried until it answers.
  absl::Duration abandon_give_up = absl::Seconds(30);
};

// Whether QEMU reports an outgoing migration it is carrying out or has carried out (a
// query-migrate status, and the VM's run state): such a migration is taken up, not started
// again.
bool MigrationStarted(const std::string& status, const std::string& run_state);

// Runs the migration of `source` to `target` to an outcome (see the table above). `interrupted`
// (optional) is polled; when it returns true the run ends with kInterrupted. Blocks; thread-safe
// as far as `source` and `target` are.
MigrationResult RunMigration(Source& source, Target& target, const MigrationOptions& options,
                             const RetryOptions& retry = {},
                             const std::function<bool()>& interrupted = nullptr);

// A Target in this process: a QEMU started by StartIncoming and made to listen (Listen).
// Abandon and a failed Commit stop it.
class LocalTarget final : public Target {
 public:
  // `vm` must outlive the target.
  LocalTarget(launcher::Vm& vm, std::string uri, absl::Duration arrival_timeout = absl::Seconds(60))
      : vm_(vm), uri_(std::move(uri)), arrival_timeout_(arrival_timeout) {}
  const std::string& uri() const override { return uri_; }
  absl::Status Abandon(const std::string& why) override;
  absl::Status Commit(bool expect_running) override;

 private:
  launcher::Vm& vm_;
  const std::string uri_;
  const absl::Duration arrival_timeout_;
};

}  // namespace autoscale::neonvm::migration
