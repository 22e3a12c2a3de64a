// Faults in the middle of a live migration of the booted test guest, with real QEMUs: the target
// killed before and after the switch to postcopy, the source killed mid-migration, query-migrate
// answers arriving after their timeout at completion, a cancel racing completion, and a target
// that dies when asked to take over (FinishIncoming failing). Each checks
// that at most one copy of the VM runs at any check and that, whenever the VM survives, exactly
// one copy runs and the guest's memory is intact: a 32 MiB file in the guest's tmpfs keeps its
// md5, and the load generator, writing 64 MiB pass after pass throughout, verifies every word it
// wrote when stopped.
//
// The migration runs through RunMigration (outgoing.h) with the real QMP source, wrapped to
// inject the faults QEMU cannot be made to produce on demand (an answer that arrives too late)
// and to act at the exact moment a status is first seen (kill the target at the switch).
//
// Under TCG, precopy of a guest that keeps writing loses writes (migration.h), so a migration
// expected to complete with the load generator running uses postcopy, as the agent does there.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/vm.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "neonvm/guest/console.h"
#include "neonvm/migration/migration.h"
#include "neonvm/migration/outgoing.h"

namespace autoscale::neonvm::migration {
namespace {

using launcher::Vm;

// The real source, with hooks: `on_query` sees every query-migrate answer first, and the first
// `late_answers_at_completion` answers once QEMU reports "completed" are dropped as if they
// came after their timeout.
class FaultySource final : public Source {
 public:
  explicit FaultySource(Source& inner) : inner_(inner) {}

  std::function<void(const Progress&)> on_query;
  std::atomic<int> late_answers_at_completion{0};
  std::atomic<int> resumes{0};
  std::atomic<int> late_answers_given{0};

  std::string name() const override { return inner_.name(); }
  absl::StatusOr<std::string> RunState(absl::Duration t) override { return inner_.RunState(t); }
  absl::StatusOr<bool> KvmEnabled(absl::Duration t) override { return inner_.KvmEnabled(t); }
  absl::StatusOr<Devices> CaptureDevices(absl::Duration t) override {
    return inner_.CaptureDevices(t);
  }
  absl::Status Configure(const MigrationOptions& o, absl::Duration t) override {
    return inner_.Configure(o, t);
  }
  absl::Status Start(const std::string& uri, absl::Duration t) override {
    return inner_.Start(uri, t);
  }
  absl::StatusOr<Progress> Query(absl::Duration t) override {
    absl::StatusOr<Progress> p = inner_.Query(t);
    if (!p.ok()) return p;
    if (on_query) on_query(*p);
    if (p->status == "completed" && late_answers_at_completion > 0) {
      --late_answers_at_completion;
      ++late_answers_given;
      return absl::DeadlineExceededError("query-migrate: no answer in time (injected)");
    }
    return p;
  }
  absl::Status StartPostcopy(absl::Duration t) override { return inner_.StartPostcopy(t); }
  absl::Status Cancel(absl::Duration t) override { return inner_.Cancel(t); }
  absl::Status Resume(absl::Duration t) override {
    ++resumes;
    return inner_.Resume(t);
  }
  absl::Status Quit(absl::Duration t) override { return inner_.Quit(t); }

 private:
  Source& inner_;
};

// Whether QEMU of `vm` runs the guest (alive and in run state "running").
bool RunsTheGuest(Vm& vm) {
  if (!vm.Running()) return false;
  absl::StatusOr<std::string> s = vm.qmp().Execute("query-status", {}, absl::Seconds(5));
  return s.ok() && absl::StrContains(*s, R"("status":"running")");
}

// A query-migrate answer of an active precopy with less than 16 MiB left to send.
bool NearTheEnd(const std::string& reply) {
  if (!absl::StrContains(reply, R"("status":"active")")) return false;
  const size_t at = reply.find(R"("remaining":)");
  if (at == std::string::npos) return false;
  int64_t remaining = 0;
  const std::string digits = reply.substr(at + 12, reply.find_first_of(",}", at) - at - 12);
  return absl::SimpleAtoi(digits, &remaining) && remaining < 16 * kMiB;
}

class MigrationFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_GUEST();
    auto image = testing::GuestWithLoadgen(dir_.path());
    ASSERT_TRUE(image.ok()) << image.status();
    auto spec = testing::GuestSpec("mig-fault");
    ASSERT_TRUE(spec.ok()) << spec.status();
    spec->initrd = image->initrd;
    auto booted = testing::Boot(*spec);
    ASSERT_TRUE(booted.ok()) << booted.status();
    source_ = std::move(booted->vm);
    console_ = std::move(booted->console);
    md5_ = Run(*console_,
               "dd if=/dev/urandom of=/tmp/blob bs=1M count=32 2>/dev/null && md5sum /tmp/blob");
    ASSERT_EQ(md5_.size(), 32 + 2 + 9u) << md5_;
    qmp_source_ = NewQmpSource(source_->qmp(), source_->spec());
    source_wrapper_ = std::make_unique<FaultySource>(*qmp_source_);
    auto target = StartTarget(*source_);
    ASSERT_TRUE(target.ok()) << target.status();
    target_ = std::move(*target);
  }

  std::string Run(guest::GuestConsole& console, const std::string& command) {
    auto out = console.Run(command, absl::Seconds(60));
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  void StartLoad() {
    loadgen_pid_ = Run(*console_, "loadgen --memory-mib=64 >/tmp/loadgen.out 2>&1 & echo $!");
    Run(*console_, "sleep 1");  // a pass or two first: the migration starts with dirty memory
  }

  // Runs the migration with `options` (the target listening for postcopy if allowed).
  MigrationResult Migrate(const MigrationOptions& options, const RetryOptions& retry = {}) {
    absl::StatusOr<std::string> uri = Listen(*target_, options.allow_postcopy);
    EXPECT_TRUE(uri.ok()) << uri.status();
    if (!uri.ok()) return {};
    LocalTarget local(*target_, *uri, absl::Seconds(30));
    MigrationResult r = RunMigration(*source_wrapper_, local, options, retry);
    LOG(INFO) << "outcome " << OutcomeName(r.outcome) << " in phase " << PhaseName(r.phase) << ": "
              << r.error;
    return r;
  }

  // Exactly one copy runs, `vm`, and the guest's memory is intact there.
  void ExpectOnlyCopyIntact(Vm& vm, bool load_running) {
    Vm& other = &vm == source_.get() ? *target_ : *source_;
    EXPECT_TRUE(RunsTheGuest(vm)) << vm.name() << " " << vm.ExitDescription() << vm.LogTail();
    EXPECT_FALSE(RunsTheGuest(other)) << "a second copy runs";
    std::unique_ptr<guest::GuestConsole> connected;
    guest::GuestConsole* console = console_.get();
    if (&vm != source_.get()) {
      auto c = guest::GuestConsole::Connect(vm.serial_path());
      ASSERT_TRUE(c.ok()) << c.status();
      connected = std::move(*c);
      console = connected.get();
    }
    if (load_running) {
      std::string report = Run(*console, absl::StrCat("kill -TERM ", loadgen_pid_, "; wait ",
                                                      loadgen_pid_, "; cat /tmp/loadgen.out"));
      EXPECT_TRUE(absl::StrContains(report, "verified")) << report;
      EXPECT_FALSE(absl::StrContains(report, "CORRUPT")) << report;
    }
    EXPECT_EQ(Run(*console, "md5sum /tmp/blob"), md5_);
  }

  MigrationOptions Postcopy() {
    MigrationOptions o;
    o.allow_postcopy = true;
    o.postcopy_after_passes = 1;
    o.poll_interval = absl::Milliseconds(5);
    return o;
  }

  testing::TempDir dir_;
  std::unique_ptr<Vm> source_;
  std::unique_ptr<guest::GuestConsole> console_;
  std::unique_ptr<Source> qmp_source_;
  std::unique_ptr<FaultySource> source_wrapper_;
  std::unique_ptr<Vm> target_;
  std::string md5_;
  std::string loadgen_pid_;
};

// Precopy, the target killed while pages are on their way: the source never paused, runs on.
TEST_F(MigrationFaultTest, TargetKilledBeforeTheSwitchLeavesTheSourceRunning) {
  StartLoad();
  MigrationOptions o;
  o.max_bandwidth_bytes_per_second = 16 * kMiB;  // still sending when the target dies
  source_wrapper_->on_query = [&](const Progress& p) {
    if (p.status == "active" && target_->Running()) target_->Kill();
  };
  MigrationResult r = Migrate(o);
  EXPECT_EQ(r.outcome, Outcome::kStayed) << r.error;
  EXPECT_EQ(source_wrapper_->resumes, 0) << "the source never paused";
  ExpectOnlyCopyIntact(*source_, /*load_running=*/true);
}

// Postcopy, the target killed right after the switch: it held the only live copy (the source's
// is stale from the switch on), so the VM is lost: the source is left paused, never resumed.
TEST_F(MigrationFaultTest, TargetKilledAfterTheSwitchToPostcopyIsLostNotRunTwice) {
  StartLoad();
  // Pages follow slowly after the switch: the target dies well before it has them all.
  ASSERT_TRUE(source_->qmp()
                  .Execute("migrate-set-parameters", R"({"max-postcopy-bandwidth":4194304})")
                  .ok());
  bool killed_in_postcopy = false;
  source_wrapper_->on_query = [&](const Progress& p) {
    if (p.status == "postcopy-active" && target_->Running()) {
      killed_in_postcopy = true;
      target_->Kill();
    }
  };
  MigrationResult r = Migrate(Postcopy(), {.abandon_give_up = absl::Seconds(2)});
  ASSERT_TRUE(killed_in_postcopy) << "the migration ended before its postcopy: " << r.error;
  EXPECT_EQ(r.outcome, Outcome::kLost) << r.error;
  EXPECT_EQ(r.phase, Phase::kPostcopy);
  EXPECT_EQ(source_wrapper_->resumes, 0) << "a stale copy was resumed";
  EXPECT_FALSE(RunsTheGuest(*source_));
  EXPECT_FALSE(RunsTheGuest(*target_));
  EXPECT_TRUE(source_->Running()) << "the paused source is kept (its QEMU was not quit)";
}

// The source's QEMU dies in the middle of precopy: the target's partial copy cannot run and is
// stopped; nothing is resumed or left running.
TEST_F(MigrationFaultTest, SourceKilledMidMigrationLeavesNoPartialCopyRunning) {
  MigrationOptions o;
  o.max_bandwidth_bytes_per_second = 16 * kMiB;
  source_wrapper_->on_query = [&](const Progress& p) {
    if (p.status == "active" && source_->Running()) source_->Kill();
  };
  MigrationResult r = Migrate(o);
  EXPECT_EQ(r.outcome, Outcome::kStayed) << r.error;
  EXPECT_FALSE(RunsTheGuest(*target_));
  EXPECT_FALSE(target_->Running()) << "the target's partial copy is stopped";
  EXPECT_FALSE(source_->Running());
}

// query-migrate answers come too late just as the migration completes: the completion is found
// on the next answer, never taken for a failure (which resumed the source while the target ran).
TEST_F(MigrationFaultTest, AnswersPastTheirTimeoutAtCompletionDoNotRunTwoCopies) {
  StartLoad();
  source_wrapper_->late_answers_at_completion = 3;
  MigrationResult r = Migrate(Postcopy());
  EXPECT_EQ(r.outcome, Outcome::kMigrated) << r.error;
  EXPECT_EQ(source_wrapper_->late_answers_given, 3);
  EXPECT_EQ(source_wrapper_->resumes, 0);
  for (int i = 0; i < 100 && source_->Running(); ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(source_->Running()) << "the source quit";
  ExpectOnlyCopyIntact(*target_, /*load_running=*/true);
}

// An operator's migrate_cancel races the completion of a precopy (an idle guest: TCG's precopy
// is only safe for one). Whichever wins, exactly one copy runs, with the guest's data intact.
TEST_F(MigrationFaultTest, ACancelRacingCompletionLeavesOneCopy) {
  std::atomic<bool> done{false};
  std::thread canceller([&] {
    while (!done) {
      absl::StatusOr<std::string> q = source_->qmp().Execute("query-migrate", {}, absl::Seconds(5));
      if (q.ok() && (NearTheEnd(*q) || absl::StrContains(*q, R"("status":"device")"))) {
        // Cancel now (QEMU ignores it once the migration has completed).
        (void)source_->qmp().Execute("migrate_cancel", {}, absl::Seconds(5));
        return;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  });
  MigrationResult r = Migrate(MigrationOptions{});
  done = true;
  canceller.join();
  RecordProperty("outcome", OutcomeName(r.outcome));
  ASSERT_TRUE(r.outcome == Outcome::kMigrated || r.outcome == Outcome::kStayed) << r.error;
  if (r.outcome == Outcome::kMigrated) {
    for (int i = 0; i < 100 && source_->Running(); ++i) absl::SleepFor(absl::Milliseconds(20));
    ExpectOnlyCopyIntact(*target_, /*load_running=*/false);
  } else {
    EXPECT_FALSE(target_->Running()) << "the target's copy is stopped";
    ExpectOnlyCopyIntact(*source_, /*load_running=*/false);
  }
}

// The target agent's FinishIncoming fails for real: the target QEMU dies as it is asked to take
// over a completed precopy (an idle guest). The source's copy is complete, paused in postmigrate:
// it runs the VM again (not quit), so exactly one copy runs, with the guest's data intact.
TEST_F(MigrationFaultTest, ATargetThatDiesAtFinishIncomingLeavesTheVmOnTheSource) {
  class DyingTarget final : public Target {
   public:
    DyingTarget(Vm& vm, std::string uri) : vm_(vm), local_(vm, std::move(uri)) {}
    const std::string& uri() const override { return local_.uri(); }
    absl::Status Abandon(const std::string& why) override { return local_.Abandon(why); }
    absl::Status Commit(bool) override {
      vm_.Kill();
      return absl::FailedPreconditionError("the target QEMU died taking over (injected)");
    }

   private:
    Vm& vm_;
    LocalTarget local_;
  };
  absl::StatusOr<std::string> uri = Listen(*target_, /*postcopy=*/false);
  ASSERT_TRUE(uri.ok()) << uri.status();
  DyingTarget dying(*target_, *uri);
  MigrationResult r = RunMigration(*source_wrapper_, dying, MigrationOptions{}, RetryOptions{});
  EXPECT_EQ(r.outcome, Outcome::kStayed) << r.error;
  EXPECT_EQ(source_wrapper_->resumes, 1) << "the completed source runs the VM again";
  for (int i = 0; i < 100 && target_->Running(); ++i) absl::SleepFor(absl::Milliseconds(20));
  ExpectOnlyCopyIntact(*source_, /*load_running=*/false);
}

}  // namespace
}  // namespace autoscale::neonvm::migration
