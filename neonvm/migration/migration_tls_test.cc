// QEMU's TLS on the migration stream, with real QEMUs (no guest: the firmware's memory is the
// state) and certificates of a CA made here with openssl: a stream to the target holding the
// ordered node's certificate goes through; a target with a certificate of another CA, one whose
// name is not the ordered node's, and a source that is not the order's source are refused, and
// the source runs on each time. A rotated certificate reaches a source QEMU's next migration.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/test_ca.h"
#include "autoscale/testing/vm.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "neonvm/migration/migration.h"
#include "neonvm/migration/outgoing.h"

namespace autoscale::neonvm::migration {
namespace {

using launcher::Vm;

std::string QueryStatus(Vm& vm) {
  auto s = vm.qmp().Execute("query-status");
  return s.ok() ? *s : std::string(s.status().message());
}

class MigrationTlsTest : public ::testing::Test {
 protected:
  static MigrationResult Failed(absl::Status why) {
    MigrationResult r;
    r.outcome = Outcome::kStayed;
    r.error = std::move(why);
    return r;
  }

  // A credentials directory for the certificate `file` of `ca` (its own CA as the trusted one).
  std::string Dir(const testing::TestCa& ca, const std::string& file, const std::string& uri) {
    absl::StatusOr<rpc::TlsFiles> f = ca.Issue(file, uri);
    EXPECT_TRUE(f.ok()) << f.status();
    const std::string dir =
        absl::StrCat(tmp_.path(), "/", ca.dir().substr(tmp_.path().size() + 1), "-", file, "-qemu");
    absl::Status made = MakeTlsDir(dir, f->cert, f->key, f->ca);
    EXPECT_TRUE(made.ok()) << made;
    return dir;
  }

  // Migrates `source` to a new target listening with `tls`, the source's side with `options`.
  MigrationResult Migrate(Vm& source, const IncomingTls& tls, const MigrationOptions& options,
                          std::unique_ptr<Vm>* target_out = nullptr) {
    absl::StatusOr<Devices> devices = CaptureDevices(source.qmp(), source.spec());
    EXPECT_TRUE(devices.ok()) << devices.status();
    absl::StatusOr<std::unique_ptr<Vm>> target = StartIncoming(source.spec(), *devices);
    EXPECT_TRUE(target.ok()) << target.status();
    if (!target.ok()) return Failed(target.status());
    absl::StatusOr<std::string> uri = Listen(**target, /*allow_postcopy=*/false, "", tls);
    EXPECT_TRUE(uri.ok()) << uri.status();
    if (!uri.ok()) return Failed(uri.status());
    std::unique_ptr<Source> sender = NewQmpSource(source.qmp(), source.spec());
    LocalTarget local(**target, *uri, absl::Seconds(10));
    MigrationResult r = RunMigration(*sender, local, options);
    if (target_out != nullptr) *target_out = *std::move(target);
    return r;
  }

  // A running QEMU without a guest (null if it cannot start).
  static std::unique_ptr<Vm> RunningSource(const std::string& name) {
    absl::StatusOr<std::unique_ptr<Vm>> started = Vm::Start(testing::NoGuestSpec(name));
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return nullptr;
    absl::Status resumed = (*started)->Resume();
    EXPECT_TRUE(resumed.ok()) << resumed;
    return *std::move(started);
  }
  // Sends to node b's QEMU, as node a with the credentials in `dir`.
  static MigrationOptions ToB(const std::string& dir) {
    MigrationOptions to_b;
    to_b.tls_dir = dir;
    to_b.tls_hostname = "node-b";
    to_b.timeout = absl::Seconds(20);
    return to_b;
  }

  testing::TempDir tmp_{"migration-tls"};
};

TEST_F(MigrationTlsTest, OnlyTheOrderedTargetGetsTheStream) {
  AUTOSCALE_REQUIRE_QEMU();
  AUTOSCALE_REQUIRE_OPENSSL();
  absl::StatusOr<testing::TestCa> ca = testing::TestCa::Create(tmp_.path() + "/ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<testing::TestCa> other = testing::TestCa::Create(tmp_.path() + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string a = Dir(*ca, "node-a", "spiffe://t/node/a");
  const std::string b = Dir(*ca, "node-b", "spiffe://t/node/b");
  const std::string c = Dir(*ca, "node-c", "spiffe://t/node/c");
  const std::string forged_b = Dir(*other, "node-b", "spiffe://t/node/b");

  std::unique_ptr<Vm> started = RunningSource("mig-tls");
  ASSERT_NE(started, nullptr);
  Vm& source = *started;
  const MigrationOptions to_b = ToB(a);
  const IncomingTls from_a{.dir = b, .source_dn = "CN=node-a"};

  // A target with node b's name from another CA; node c's genuine certificate where node b was
  // ordered; node b, but expecting another source than node a.
  struct Case {
    const char* what;
    IncomingTls tls;
  } refused[] = {
      {"another CA's node-b", {.dir = forged_b, .source_dn = "CN=node-a"}},
      {"node c", {.dir = c, .source_dn = "CN=node-a"}},
      {"node b expecting node c", {.dir = b, .source_dn = "CN=node-c"}},
  };
  for (const Case& bad : refused) {
    MigrationResult r = Migrate(source, bad.tls, to_b);
    EXPECT_EQ(r.outcome, Outcome::kStayed) << bad.what << ": " << r.error;
    EXPECT_TRUE(absl::StrContains(QueryStatus(source), R"("status":"running")"))
        << bad.what << ": " << QueryStatus(source);
    LOG(INFO) << bad.what << ": refused: " << r.error;
  }

  // The ordered target, over TLS.
  std::unique_ptr<Vm> target;
  MigrationResult r = Migrate(source, from_a, to_b, &target);
  ASSERT_EQ(r.outcome, Outcome::kMigrated) << r.error;
  ASSERT_NE(target, nullptr);
  EXPECT_TRUE(absl::StrContains(QueryStatus(*target), R"("status":"running")"))
      << QueryStatus(*target);
  absl::StatusOr<std::string> params = target->qmp().Execute("query-migrate-parameters");
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_TRUE(absl::StrContains(*params, R"("tls-creds":"autoscale-migration-tls-server")"))
      << *params;
}

// A source QEMU holds no credentials from one migration to the next: it presents the node's
// files as they are when a migration starts, so a rotated certificate reaches running VMs. The
// first attempt, with the old certificate, is refused by a target that trusts only the new CA;
// the same source QEMU, after the files are replaced in place, gets through. Both QEMUs run as
// the dedicated user (root dropped), which cannot read the node's root-only key itself.
TEST_F(MigrationTlsTest, ARotatedCertificateReachesTheNextMigration) {
  AUTOSCALE_REQUIRE_QEMU();
  AUTOSCALE_REQUIRE_OPENSSL();
  absl::StatusOr<testing::TestCa> old_ca = testing::TestCa::Create(tmp_.path() + "/old");
  ASSERT_TRUE(old_ca.ok()) << old_ca.status();
  absl::StatusOr<testing::TestCa> new_ca = testing::TestCa::Create(tmp_.path() + "/new");
  ASSERT_TRUE(new_ca.ok()) << new_ca.status();
  // Node a's files, where an agent's --tls_* flags point: replaced in place on rotation, 0600.
  const std::string files = tmp_.path() + "/node-a-files";
  std::filesystem::create_directories(files);
  auto place = [&](const testing::TestCa& ca) {
    absl::StatusOr<rpc::TlsFiles> f = ca.Issue("node-a", "spiffe://t/node/a");
    ASSERT_TRUE(f.ok()) << f.status();
    for (const auto& [from, to] :
         {std::pair{f->cert, "cert.pem"}, {f->key, "key.pem"}, {f->ca, "ca.pem"}}) {
      const std::string path = files + "/" + to;
      std::filesystem::copy_file(from, path + ".new");
      std::filesystem::permissions(
          path + ".new", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
      std::filesystem::rename(path + ".new", path);
    }
  };
  place(*old_ca);
  const std::string a = tmp_.path() + "/node-a-qemu";
  ASSERT_TRUE(MakeTlsDir(a, files + "/cert.pem", files + "/key.pem", files + "/ca.pem").ok());
  const std::string b = Dir(*new_ca, "node-b", "spiffe://t/node/b");

  std::unique_ptr<Vm> started = RunningSource("mig-rotate");
  ASSERT_NE(started, nullptr);
  Vm& source = *started;
  const MigrationOptions to_b = ToB(a);
  const IncomingTls from_a{.dir = b, .source_dn = "CN=node-a"};

  MigrationResult r = Migrate(source, from_a, to_b);
  EXPECT_EQ(r.outcome, Outcome::kStayed) << "the old CA's certificate: " << r.error;
  EXPECT_TRUE(absl::StrContains(QueryStatus(source), R"("status":"running")"))
      << QueryStatus(source);

  place(*new_ca);
  std::unique_ptr<Vm> target;
  r = Migrate(source, from_a, to_b, &target);
  ASSERT_EQ(r.outcome, Outcome::kMigrated) << r.error;
  ASSERT_NE(target, nullptr);
  EXPECT_TRUE(absl::StrContains(QueryStatus(*target), R"("status":"running")"))
      << QueryStatus(*target);
  // Nothing of the key is left where QEMU's user could read it.
  for (const auto& entry : std::filesystem::directory_iterator("/tmp")) {
    EXPECT_FALSE(absl::StartsWith(entry.path().filename().string(), "neonvm-tls."))
        << entry.path() << " is left behind";
  }

  if (std::string why = testing::QemuUserMissing(); !why.empty()) {
    LOG(WARNING) << "not checking that the QEMUs dropped root: " << why;
    return;
  }
  absl::StatusOr<std::optional<launcher::RunAs>> user = launcher::QemuRunAs(source.spec());
  ASSERT_TRUE(user.ok() && user->has_value()) << user.status();
  EXPECT_TRUE(
      absl::StartsWith(testing::ProcStatus(target->pid(), "Uid"), absl::StrCat((*user)->uid, "\t")))
      << testing::ProcStatus(target->pid(), "Uid");
}

}  // namespace
}  // namespace autoscale::neonvm::migration
