#include "neonvm/migration/outgoing.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"
#include "neonvm/migration/migration.h"

namespace autoscale::neonvm::migration {
namespace {

// One QMP call's bound.
constexpr absl::Duration kCall = absl::Seconds(10);

bool Postcopy(const std::string& status) {
  return status == "postcopy-active" || status == "postcopy-paused" ||
         status == "postcopy-recover" || status == "postcopy-recover-setup";
}

bool Stopped(const std::string& state) {
  return state == "paused" || state == "postmigrate" || state == "finish-migrate";
}

// Doubling waits between attempts of what must be retried.
class Backoff {
 public:
  explicit Backoff(const RetryOptions& o) : next_(o.min), max_(o.max) {}
  void Wait() {
    absl::SleepFor(next_);
    next_ = std::min(next_ * 2, max_);
  }

 private:
  absl::Duration next_;
  const absl::Duration max_;
};

class Run {
 public:
  Run(Source& source, Target& target, const MigrationOptions& options, const RetryOptions& retry,
      const std::function<bool()>& interrupted)
      : source_(source),
        target_(target),
        options_(options),
        retry_(retry),
        interrupted_(interrupted),
        where_(absl::StrCat("migrating ", source.name(), " to ", target.uri())) {}

  MigrationResult Go() {
    absl::StatusOr<std::string> state = source_.RunState(kCall);
    absl::StatusOr<Progress> before = state.ok() ? source_.Query(kCall) : state.status();
    if (!before.ok()) {
      // Nothing was started: the target goes.
      return Stay(Annotate(before.status(), "reading the source"), /*device_sent=*/false);
    }
    if (MigrationStarted(before->status, *state)) {
      // Its controller restarted: take the migration up where QEMU has it. Whether the source
      // ran before is not known, so it is not resumed.
      LOG(INFO) << where_ << ": taking up a migration QEMU reports " << before->status;
      result_.source_was_running = false;
    } else {
      result_.source_was_running = *state == "running";
      if (absl::Status s = source_.Configure(options_, kCall); !s.ok()) {
        return Stay(Annotate(s, "configuring the migration"), false);
      }
      absl::Status started = source_.Start(target_.uri(), kCall);
      // A lost answer leaves it unknown whether QEMU started: the next query tells.
      if (!started.ok() && started.code() != absl::StatusCode::kDeadlineExceeded &&
          started.code() != absl::StatusCode::kUnavailable) {
        return Stay(Annotate(started, "starting the migration"), false);
      }
    }
    result_.phase = Phase::kPrecopy;
    return Follow();
  }

 private:
  bool Interrupted() const { return interrupted_ && interrupted_(); }

  MigrationResult Done(Outcome outcome, absl::Status error) {
    result_.outcome = outcome;
    result_.error = error.ok() ? error : Annotate(error, where_);
    return result_;
  }

  // Follows query-migrate to an outcome.
  MigrationResult Follow() {
    const absl::Time deadline = absl::Now() + options_.timeout;
    bool postcopy_requested = false;
    bool cancel_sent = false;
    bool device_sent = false;
    std::optional<absl::Time> paused_since;
    Backoff backoff(retry_);
    while (true) {
      if (Interrupted()) return Done(Outcome::kInterrupted, absl::CancelledError("interrupted"));
      absl::StatusOr<Progress> p = source_.Query(kCall);
      if (!p.ok()) {
        if (p.status().code() == absl::StatusCode::kUnavailable) return LostContact(p.status());
        backoff.Wait();  // a slow answer: the state is unknown, ask again
        continue;
      }
      const std::string& status = p->status;
      if (Postcopy(status)) result_.phase = Phase::kPostcopy;
      if (status == "device") device_sent = true;
      if (status == "completed") {
        result_.stats = p->stats;
        result_.stats.postcopy = result_.phase == Phase::kPostcopy || postcopy_requested;
        result_.phase = Phase::kCompleted;
        return Commit();
      }
      const std::string failure =
          absl::StrCat("QEMU reports the migration ", status, p->error.empty() ? "" : ": ",
                       p->error, cancel_sent ? " (cancelled: not finished in time)" : "");
      if (status == "failed" || status == "cancelled") {
        if (result_.phase == Phase::kPostcopy) return Lost(absl::AbortedError(failure));
        if (postcopy_requested) {
          // The switch may have begun: only a source QEMU restarted itself never handed over.
          absl::StatusOr<std::string> now = source_.RunState(kCall);
          if (!now.ok() || *now != "running") {
            return Lost(absl::AbortedError(
                absl::StrCat(failure,
                             "; it failed during the switch to postcopy and the source "
                             "did not resume on its own")));
          }
        }
        // Cancelled at the timeout: the caller sees the deadline.
        return Stay(
            cancel_sent ? absl::DeadlineExceededError(failure) : absl::AbortedError(failure),
            device_sent || postcopy_requested);
      }
      if (status == "postcopy-paused") {
        // The target stopped answering after the point of no return; nothing here resumes it.
        if (!paused_since) paused_since = absl::Now();
        if (absl::Now() - *paused_since >= retry_.abandon_give_up) {
          return Lost(absl::AbortedError(absl::StrCat("the migration stayed postcopy-paused for ",
                                                      absl::FormatDuration(retry_.abandon_give_up),
                                                      ": the target is gone")));
        }
      } else {
        paused_since.reset();
      }
      if (result_.phase == Phase::kPrecopy) {
        const bool sending = status == "setup" || status == "active";
        if (!cancel_sent && sending && absl::Now() >= deadline) {
          // Only while precopy sends: a cancel after the device state went would race completion.
          absl::Status s = source_.Cancel(kCall);
          if (!s.ok()) LOG(WARNING) << where_ << ": migrate_cancel: " << s;
          cancel_sent = true;
        }
        if (options_.allow_postcopy && !postcopy_requested && !cancel_sent && status == "active" &&
            p->passes >= options_.postcopy_after_passes) {
          absl::Status s = source_.StartPostcopy(kCall);
          // Even a lost answer may have switched: the status tells.
          if (!s.ok()) LOG(WARNING) << where_ << ": migrate-start-postcopy: " << s;
          postcopy_requested = true;
        }
      }
      absl::SleepFor(options_.poll_interval);
    }
  }

  // Before the point of no return: the target's copy is stopped first, then the source runs
  // again if it ran before. `device_sent`: the target may have had the device state.
  MigrationResult Stay(absl::Status why, bool device_sent) {
    Backoff backoff(retry_);
    const absl::Time give_up = absl::Now() + retry_.abandon_give_up;
    while (true) {
      absl::Status s = target_.Abandon(std::string(why.message()));
      if (s.ok()) break;
      if (!device_sent && absl::Now() >= give_up) {
        // Without the device state the target cannot run the VM: the source may resume anyway.
        LOG(WARNING) << where_ << ": the target did not confirm it stopped (" << s
                     << "); it never had the VM's device state";
        break;
      }
      if (Interrupted()) return Done(Outcome::kInterrupted, why);
      backoff.Wait();
    }
    if (result_.source_was_running) {
      absl::StatusOr<std::string> state = source_.RunState(kCall);
      if (state.ok() && Stopped(*state)) {
        if (absl::Status s = source_.Resume(kCall); !s.ok()) {
          return Done(
              Outcome::kStayed,
              absl::Status(why.code(),
                           absl::StrCat(why.message(), "; resuming the source: ", s.message())));
        }
      }
    }
    return Done(Outcome::kStayed, why);
  }

  // After the point of no return, when the target cannot run the VM: the source is left paused
  // (its state is stale), the target's broken copy stopped.
  MigrationResult Lost(absl::Status why) {
    absl::Status s = target_.Abandon(std::string(why.message()));
    if (!s.ok()) LOG(WARNING) << where_ << ": stopping the target's broken copy: " << s;
    return Done(Outcome::kLost, why);
  }

  // The source has completed: the target is the VM once it says it runs it.
  MigrationResult Commit() {
    Backoff backoff(retry_);
    while (true) {
      absl::Status s = target_.Commit(result_.source_was_running);
      if (s.ok()) {
        absl::Status quit = source_.Quit(kCall);
        return Done(Outcome::kMigrated,
                    quit.ok() ? absl::OkStatus() : Annotate(quit, "the source did not quit"));
      }
      if (s.code() == absl::StatusCode::kFailedPrecondition ||
          s.code() == absl::StatusCode::kNotFound) {
        const absl::Status why = Annotate(s, "the target did not take the VM over");
        if (result_.stats.postcopy) return Done(Outcome::kLost, why);
        // Precopy completed: the paused source holds the whole VM.
        result_.phase = Phase::kPrecopy;
        return Stay(why, /*device_sent=*/false);  // its copy is stopped already
      }
      if (Interrupted()) return Done(Outcome::kInterrupted, s);
      LOG(WARNING) << where_ << ": asking the target to take the VM over: " << s;
      backoff.Wait();
    }
  }

  // The source's QMP connection is gone. Whether QEMU went on (and finished) only the target
  // can tell.
  MigrationResult LostContact(const absl::Status& why) {
    if (result_.phase == Phase::kPostcopy) {
      return Lost(Annotate(why, "contact with the source lost during postcopy"));
    }
    Backoff backoff(retry_);
    while (true) {
      absl::Status s = target_.Commit(/*expect_running=*/false);
      if (s.ok()) {
        return Done(Outcome::kMigrated,
                    Annotate(why, "contact with the source lost; the target runs the VM"));
      }
      if (s.code() == absl::StatusCode::kFailedPrecondition ||
          s.code() == absl::StatusCode::kNotFound) {
        return Done(Outcome::kStayed, Annotate(why,
                                               "contact with the source lost before the "
                                               "target had the VM"));
      }
      if (Interrupted()) return Done(Outcome::kInterrupted, why);
      backoff.Wait();
    }
  }

  Source& source_;
  Target& target_;
  const MigrationOptions options_;
  const RetryOptions retry_;
  const std::function<bool()>& interrupted_;
  const std::string where_;
  MigrationResult result_;
};

}  // namespace

bool MigrationStarted(const std::string& status, const std::string& run_state) {
  // A VM that arrived by migration reports its incoming migration "completed" while it runs:
  // only a source left in postmigrate completed an outgoing one.
  if (status == "completed") return run_state == "postmigrate";
  return status == "setup" || status == "active" || status == "pre-switchover" ||
         status == "device" || status == "cancelling" || status == "wait-unplug" ||
         Postcopy(status);
}

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kStarting:
      return "starting";
    case Phase::kPrecopy:
      return "precopy";
    case Phase::kPostcopy:
      return "postcopy";
    case Phase::kCompleted:
      return "completed";
  }
  return "?";
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kMigrated:
      return "migrated";
    case Outcome::kStayed:
      return "stayed";
    case Outcome::kLost:
      return "lost";
    case Outcome::kInterrupted:
      return "interrupted";
  }
  return "?";
}

MigrationResult RunMigration(Source& source, Target& target, const MigrationOptions& options,
                             const RetryOptions& retry, const std::function<bool()>& interrupted) {
  return Run(source, target, options, retry, interrupted).Go();
}

absl::Status LocalTarget::Abandon(const std::string&) { return vm_.Stop(absl::Seconds(2)); }

absl::Status LocalTarget::Commit(bool expect_running) {
  absl::Status arrived = AwaitIncoming(vm_, expect_running, arrival_timeout_);
  if (arrived.ok()) return arrived;
  absl::Status stopped = vm_.Stop(absl::Seconds(2));
  if (!stopped.ok()) LOG(WARNING) << stopped;
  return absl::FailedPreconditionError(
      absl::StrCat(arrived.message(), "; the target's copy is stopped"));
}

}  // namespace autoscale::neonvm::migration
