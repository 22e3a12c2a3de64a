// The attacks of issue 14 against a scheduler served over real mutual TLS: a CA made with
// openssl at test time issues certificates for node a, node b, admin, a VM and the scheduler,
// plus an expired one, one from a foreign CA and one without an identity.
#include "autoscale/scheduler/authz.h"

#include <stdio.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/rpc/identity.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "autoscale/rpc/tls.h"
#include "autoscale/scheduler/request_handler.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/test_ca.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

using ::autoscale::testing::TestCa;
using Service = rpc::scheduler::SchedulerService;

constexpr char kNodeA[] = "spiffe://test/node/a";
constexpr char kNodeB[] = "spiffe://test/node/b";
constexpr char kAdmin[] = "spiffe://test/admin";

api::v1::PermitRequest Ask(const std::string& node, const std::string& vm, int64_t cus) {
  api::v1::PermitRequest r;
  r.set_node(node);
  r.set_vm(vm);
  r.mutable_compute_unit()->set_milli_cpu(250);
  r.mutable_compute_unit()->set_memory_bytes(kGiB);
  r.mutable_resources()->set_milli_cpu(250 * cus);
  r.mutable_resources()->set_memory_bytes(kGiB * cus);
  return r;
}

template <typename T>
void ExpectDenied(const absl::StatusOr<T>& result, const std::string& who,
                  const std::string& what) {
  ASSERT_EQ(result.status().code(), absl::StatusCode::kPermissionDenied) << result.status();
  EXPECT_NE(result.status().message().find(who), std::string::npos) << result.status();
  EXPECT_NE(result.status().message().find(what), std::string::npos) << result.status();
}

// Atomically puts `from`'s three files at `to`'s paths (a rotation as a deployment does it).
void Install(const rpc::TlsFiles& from, const rpc::TlsFiles& to) {
  for (auto [src, dst] : {std::pair{from.ca, to.ca}, {from.key, to.key}, {from.cert, to.cert}}) {
    const std::string tmp = dst + ".tmp";
    ASSERT_EQ(system(absl::StrCat("cp ", src, " ", tmp).c_str()), 0);
    ASSERT_EQ(rename(tmp.c_str(), dst.c_str()), 0);
  }
}

class AuthzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_OPENSSL();
    absl::StatusOr<TestCa> ca = TestCa::Create(dir_.path() + "/ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<TestCa>(*std::move(ca));

    ledger_ = *ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>());
    for (const char* node : {"a", "b"}) {
      ASSERT_TRUE(
          ledger_
              ->RegisterNode(
                  {.name = node, .total = {8000, 32 * kGiB}, .agent_address = "127.0.0.1:1"})
              .ok());
    }
    for (const auto& [vm, node] : {std::pair{"va", "a"}, {"vb", "b"}}) {
      ASSERT_TRUE(ledger_
                      ->PlaceVm({.name = vm,
                                 .bounds = {1, 8},
                                 .compute_unit = {250, kGiB},
                                 .initial = {250, kGiB},
                                 .migratable = true},
                                node)
                      .ok());
    }
    handler_ = std::make_unique<RequestHandler>(*ledger_, core::Resources{250, kGiB});
    authz_ = std::make_unique<Authz>(*handler_,
                                     [this](const std::string& vm) { return ledger_->GetVm(vm); });

    absl::StatusOr<rpc::TlsFiles> server = ca_->Issue("scheduler", "spiffe://test/scheduler");
    ASSERT_TRUE(server.ok()) << server.status();
    // The scheduler's own copies, which a rotation replaces.
    const std::string mine = dir_.path() + "/scheduler-";
    server_files_ = {.cert = mine + "cert.pem", .key = mine + "key.pem", .ca = mine + "ca.pem"};
    Install(*server, server_files_);
    absl::StatusOr<rpc::Security> security =
        rpc::Security::MutualTls(server_files_, absl::Seconds(1));
    ASSERT_TRUE(security.ok()) << security.status();
    absl::StatusOr<std::unique_ptr<rpc::Server>> started = rpc::scheduler::StartGrpcServer(
        [this](const std::string& id) { return authz_->For(id); }, "127.0.0.1:0", *security);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }

  // A client with a certificate for `uri` from this test's CA.
  std::unique_ptr<Service> Client(const std::string& file, const std::string& uri,
                                  testing::IssueOptions options = {}) {
    absl::StatusOr<rpc::TlsFiles> files = ca_->Issue(file, uri, options);
    EXPECT_TRUE(files.ok()) << files.status();
    return ClientWith(*files);
  }
  // As the agent and schedctl connect: the server must be the scheduler (`server_identity`).
  std::unique_ptr<Service> ClientWith(const rpc::TlsFiles& files,
                                      const std::string& server_identity = kScheduler) {
    absl::StatusOr<rpc::Security> security = rpc::Security::MutualTls(files);
    EXPECT_TRUE(security.ok()) << security.status();
    return *rpc::scheduler::NewGrpcClient(server_->address(), absl::Seconds(5), *security,
                                          server_identity);
  }
  static constexpr char kScheduler[] = "spiffe://test/scheduler";

  testing::TempDir dir_{"authz"};
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<RequestHandler> handler_;
  std::unique_ptr<Authz> authz_;
  rpc::TlsFiles server_files_;
  std::unique_ptr<rpc::Server> server_;
};

// A client that expects the scheduler refuses a server whose certificate (from the same CA) names
// another workload: a node's agent posing as the scheduler would otherwise hand out orders.
TEST_F(AuthzTest, ClientRefusesAServerThatIsNotTheScheduler) {
  absl::StatusOr<rpc::TlsFiles> files = ca_->Issue("admin", "spiffe://test/admin");
  ASSERT_TRUE(files.ok()) << files.status();
  std::unique_ptr<Service> fooled = ClientWith(*files, "spiffe://test/node/a");
  api::v1::RegisterNodeRequest r;
  r.set_node("c");
  r.mutable_total()->set_milli_cpu(1000);
  r.mutable_total()->set_memory_bytes(kGiB);
  r.set_agent_address("127.0.0.1:2");
  absl::StatusOr<api::v1::RegisterNodeResponse> refused = fooled->RegisterNode(r);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_FALSE(ledger_->GetNode("c").ok()) << "the request reached the server";
  EXPECT_TRUE(ClientWith(*files)->RegisterNode(r).ok());
  EXPECT_TRUE(ledger_->GetNode("c").ok());
}

TEST_F(AuthzTest, PlaintextClientIsRefused) {
  std::unique_ptr<Service> plain =
      *rpc::scheduler::NewGrpcClient(server_->address(), absl::Seconds(2));
  EXPECT_EQ(plain->Request(Ask("a", "va", 2)).status().code(), absl::StatusCode::kUnavailable);
  api::v1::RegisterNodeRequest r;
  r.set_node("evil");
  EXPECT_FALSE(plain->RegisterNode(r).ok());
  EXPECT_FALSE(ledger_->GetNode("evil").ok());
  EXPECT_EQ(ledger_->GetVm("va")->permit.milli_cpu, 250);
}

TEST_F(AuthzTest, NodeAgentActsOnlyOnItsOwnNode) {
  std::unique_ptr<Service> a = Client("node-a", kNodeA);
  std::unique_ptr<Service> b = Client("node-b", kNodeB);
  // Its own VM: granted.
  absl::StatusOr<api::v1::PermitResponse> own = a->Request(Ask("a", "va", 2));
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->permit().milli_cpu(), 500);

  // Node b asks for node a's VM, under a's name or under its own.
  ExpectDenied(b->Request(Ask("a", "va", 8)), kNodeB, "request resources for VM va on node a");
  EXPECT_EQ(b->Request(Ask("b", "va", 8)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->GetVm("va")->permit.milli_cpu, 500);
  // ... reads node a's VMs and orders, or everything.
  api::v1::ListRequest list;
  list.set_node("a");
  ExpectDenied(b->ListVms(list), kNodeB, "list the VMs of node a");
  ExpectDenied(b->ListVms(api::v1::ListRequest()), kNodeB, "every node");
  ExpectDenied(b->ListNodes(api::v1::ListRequest()), kNodeB, "list nodes of every node");
  api::v1::MigrationOrdersRequest orders;
  orders.set_node("a");
  ExpectDenied(b->GetMigrationOrders(orders), kNodeB, "read the orders of node a");
  // ... changes node a's bounds, naming node a or (falsely) itself.
  api::v1::UpdateVmBoundsRequest bounds;
  bounds.set_vm("va");
  bounds.set_node("a");
  ExpectDenied(b->UpdateVmBounds(bounds), kNodeB, "VM va on node a");
  bounds.set_node("b");
  ExpectDenied(b->UpdateVmBounds(bounds), kNodeB, "VM va on node a");
  api::v1::UpdateNodeRequest update;
  update.set_node("a");
  ExpectDenied(b->UpdateNode(update), kNodeB, "update node a");
  // Its own reads are fine.
  list.set_node("b");
  absl::StatusOr<api::v1::ListVmsResponse> vms = b->ListVms(list);
  ASSERT_TRUE(vms.ok()) << vms.status();
  ASSERT_EQ(vms->vms_size(), 1);
  EXPECT_EQ(vms->vms(0).vm(), "vb");

  EXPECT_EQ(authz_->Denials()["Request"], 1);
  EXPECT_EQ(authz_->Denials()["UpdateVmBounds"], 2);
  EXPECT_NE(
      authz_->MetricsText().find("autoscaling_scheduler_authz_denials_total{method=\"ListVms\"} 2"),
      std::string::npos)
      << authz_->MetricsText();
}

TEST_F(AuthzTest, OnlyAdminPlacesReleasesAndManagesNodes) {
  std::unique_ptr<Service> b = Client("node-b", kNodeB);
  std::unique_ptr<Service> vm = Client("vm-va", "spiffe://test/vm/va");
  std::unique_ptr<Service> nobody = Client("nobody", "");
  std::unique_ptr<Service> admin = Client("admin", kAdmin);

  api::v1::RegisterNodeRequest reg;
  reg.set_node("a");
  reg.mutable_total()->set_milli_cpu(1000000);
  reg.mutable_total()->set_memory_bytes(1024 * kGiB);
  reg.set_agent_address("10.6.6.6:10400");
  ExpectDenied(b->RegisterNode(reg), kNodeB, "register node a");
  ExpectDenied(vm->RegisterNode(reg), "spiffe://test/vm/va", "register node a");
  ExpectDenied(nobody->RegisterNode(reg), "a caller without an identity", "register node a");
  EXPECT_EQ(ledger_->GetNode("a")->agent_address, "127.0.0.1:1");
  EXPECT_EQ(ledger_->GetNode("a")->total.milli_cpu, 8000);

  api::v1::PlaceVmRequest place;
  place.set_vm("new");
  ExpectDenied(b->PlaceVm(place), kNodeB, "place VM new");
  api::v1::ReleaseVmRequest release;
  release.set_vm("va");
  ExpectDenied(b->ReleaseVm(release), kNodeB, "release VM va");
  EXPECT_TRUE(ledger_->GetVm("va").ok());
  api::v1::CordonNodeRequest cordon;
  cordon.set_node("a");
  ExpectDenied(b->CordonNode(cordon), kNodeB, "cordon node a");
  api::v1::DrainNodeRequest drain;
  drain.set_node("a");
  ExpectDenied(b->DrainNode(drain), kNodeB, "drain node a");
  api::v1::RemoveNodeRequest remove;
  remove.set_node("a");
  ExpectDenied(b->RemoveNode(remove), kNodeB, "remove node a");
  ExpectDenied(b->GetStatus(api::v1::StatusRequest()), kNodeB, "status");
  EXPECT_TRUE(ledger_->GetNode("a").ok());

  // The admin may, and a node re-registers itself.
  absl::StatusOr<api::v1::ReleaseVmResponse> released = admin->ReleaseVm(release);
  EXPECT_TRUE(released.ok()) << released.status();
  EXPECT_FALSE(ledger_->GetVm("va").ok());
  EXPECT_TRUE(admin->ListNodes(api::v1::ListRequest()).ok());
  // at its own size (raising it is the admin's: AnAgentCannotRaiseItsNodesTotalOrWatermark).
  reg.set_node("b");
  reg.mutable_total()->set_milli_cpu(8000);
  reg.mutable_total()->set_memory_bytes(32 * kGiB);
  reg.set_agent_address("127.0.0.1:2");
  absl::StatusOr<api::v1::RegisterNodeResponse> own = b->RegisterNode(reg);
  EXPECT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(ledger_->GetNode("b")->agent_address, "127.0.0.1:2");
}

TEST_F(AuthzTest, MigrationResultOnlyFromTheOrdersSource) {
  absl::StatusOr<ledger::DrainProgress> drain = ledger_->DrainNode("a");
  ASSERT_TRUE(drain.ok()) << drain.status();
  ASSERT_EQ(drain->migrating.size(), 1);
  const ledger::MigrationOrder order = drain->migrating[0];
  ASSERT_EQ(order.source_node, "a");
  ASSERT_EQ(order.target_node, "b");

  api::v1::MigrationResult result;
  result.set_order_id(order.id);
  result.set_vm("va");
  result.set_succeeded(true);
  // The target (or anyone else) cannot end it; nor can a guessed order id.
  std::unique_ptr<Service> b = Client("node-b", kNodeB);
  ExpectDenied(b->ReportMigration(result), kNodeB,
               absl::StrCat("migration order ", order.id, " of VM va"));
  std::unique_ptr<Service> a = Client("node-a", kNodeA);
  api::v1::MigrationResult guessed = result;
  guessed.set_order_id(order.id + 1);
  ExpectDenied(a->ReportMigration(guessed), kNodeA, "not an order with node a as its source");
  EXPECT_EQ(ledger_->GetVm("va")->node, "a");

  absl::StatusOr<api::v1::MigrationResultResponse> ok = a->ReportMigration(result);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ledger_->GetVm("va")->node, "b");
}

TEST_F(AuthzTest, ExpiredForeignAndMissingCertificatesAreRefused) {
  std::unique_ptr<Service> expired = Client("old-admin", kAdmin, {.expired = true});
  EXPECT_EQ(expired->ListNodes(api::v1::ListRequest()).status().code(),
            absl::StatusCode::kUnavailable);

  absl::StatusOr<TestCa> other = TestCa::Create(dir_.path() + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<rpc::TlsFiles> forged = other->Issue("admin", kAdmin);
  ASSERT_TRUE(forged.ok()) << forged.status();
  // Signed by another CA, trusting ours: the scheduler refuses it.
  std::unique_ptr<Service> foreign =
      ClientWith({.cert = forged->cert, .key = forged->key, .ca = ca_->ca_file()});
  EXPECT_EQ(foreign->ListNodes(api::v1::ListRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  // Trusting only the other CA: the client refuses the scheduler.
  std::unique_ptr<Service> distrustful = ClientWith(*forged);
  EXPECT_EQ(distrustful->ListNodes(api::v1::ListRequest()).status().code(),
            absl::StatusCode::kUnavailable);
  // Nothing was answered to any of them.
  EXPECT_TRUE(authz_->Denials().empty());
}

TEST_F(AuthzTest, CertificatesRotateWithoutRestart) {
  std::unique_ptr<Service> before = Client("admin", kAdmin);
  ASSERT_TRUE(before->ListNodes(api::v1::ListRequest()).ok());

  // A new CA: the scheduler's files are replaced by ones it signed.
  absl::StatusOr<TestCa> next = TestCa::Create(dir_.path() + "/next");
  ASSERT_TRUE(next.ok()) << next.status();
  absl::StatusOr<rpc::TlsFiles> server = next->Issue("scheduler", "spiffe://test/scheduler");
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<rpc::TlsFiles> admin = next->Issue("admin", kAdmin);
  ASSERT_TRUE(admin.ok()) << admin.status();
  Install(*server, server_files_);

  // Within a few refresh intervals (1 s) a new client of the new CA gets in, without a restart.
  absl::Status last;
  for (int i = 0; i < 100; ++i) {
    last = ClientWith(*admin)->ListNodes(api::v1::ListRequest()).status();
    if (last.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(last.ok()) << last;
  // And the old CA's certificates are no longer accepted on new connections.
  EXPECT_EQ(Client("admin2", kAdmin)->ListNodes(api::v1::ListRequest()).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(AuthzTest, OversizedRequestsAreRefusedUnread) {
  std::unique_ptr<Service> a = Client("node-a", kNodeA);
  api::v1::PermitRequest huge = Ask("a", std::string(rpc::scheduler::kMaxMessageBytes, 'x'), 1);
  EXPECT_EQ(a->Request(huge).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(a->Request(Ask("a", "va", 1)).ok());
}

// A daemon's own identity, read from its certificate (the default --trust_domain comes from it).
TEST_F(AuthzTest, CertificateIdentityReadsTheFirstUriSan) {
  absl::StatusOr<rpc::TlsFiles> a = ca_->Issue("own-a", kNodeA);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<std::string> id = rpc::CertificateIdentity(a->cert);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, kNodeA);
  EXPECT_EQ(ParseIdentity(*id).trust_domain, "test");
  absl::StatusOr<rpc::TlsFiles> none = ca_->Issue("own-none", "");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(rpc::CertificateIdentity(none->cert).value_or("error"), "");
  // Not a certificate (its key), and no file: errors naming the file.
  absl::StatusOr<std::string> key = rpc::CertificateIdentity(a->key);
  EXPECT_FALSE(key.ok());
  EXPECT_NE(key.status().message().find(a->key), std::string::npos) << key.status();
  EXPECT_FALSE(rpc::CertificateIdentity(dir_.path() + "/missing.pem").ok());
}

TEST(IdentityTest, ParsesSpiffeIds) {
  EXPECT_EQ(ParseIdentity("spiffe://td/node/a").role, Identity::Role::kNode);
  EXPECT_EQ(ParseIdentity("spiffe://td/node/a").name, "a");
  EXPECT_EQ(ParseIdentity("spiffe://td/node/a").trust_domain, "td");
  EXPECT_EQ(ParseIdentity("https://td/admin").trust_domain, "");
  EXPECT_EQ(ParseIdentity("spiffe://td/vm/v1").role, Identity::Role::kVm);
  EXPECT_EQ(ParseIdentity("spiffe://td/admin").role, Identity::Role::kAdmin);
  EXPECT_EQ(ParseIdentity("spiffe://td/scheduler").role, Identity::Role::kScheduler);
  for (const char* bad : {"", "spiffe://td", "spiffe:///admin", "https://td/admin",
                          "spiffe://td/node/", "spiffe://td/node/a/b", "spiffe://td/admin/x"}) {
    EXPECT_EQ(ParseIdentity(bad).role, Identity::Role::kNone) << bad;
  }
}

// The rate limit in process, on a manual clock: one identity's burst does not touch another's.
TEST(RateLimitTest, PerIdentityTokenBucket) {
  auto ledger = *ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>());
  ASSERT_TRUE(ledger->RegisterNode({.name = "a", .total = {8000, 32 * kGiB}}).ok());
  ASSERT_TRUE(ledger->RegisterNode({.name = "b", .total = {8000, 32 * kGiB}}).ok());
  RequestHandler handler(*ledger, core::Resources{250, kGiB});
  ManualClock clock;
  Authz authz(handler, [&](const std::string& vm) { return ledger->GetVm(vm); },
              {.rate = 1, .burst = 2, .clock = &clock});
  api::v1::MigrationOrdersRequest a =
      rpc::scheduler::WithVersion(api::v1::MigrationOrdersRequest());
  a.set_node("a");
  api::v1::MigrationOrdersRequest b = a;
  b.set_node("b");
  std::shared_ptr<Service> node_a = authz.For(kNodeA);
  EXPECT_TRUE(node_a->GetMigrationOrders(a).ok());
  EXPECT_TRUE(node_a->GetMigrationOrders(a).ok());
  absl::StatusOr<api::v1::MigrationOrdersResponse> limited = node_a->GetMigrationOrders(a);
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted) << limited.status();
  EXPECT_NE(limited.status().message().find(kNodeA), std::string::npos) << limited.status();
  EXPECT_TRUE(authz.For(kNodeB)->GetMigrationOrders(b).ok());
  EXPECT_EQ(authz.RateLimited(), 1);
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(authz.For(kNodeA)->GetMigrationOrders(a).ok());
}

api::v1::RegisterNodeRequest Register(const std::string& node, int64_t milli_cpu,
                                      int64_t memory_bytes, double watermark = 0) {
  api::v1::RegisterNodeRequest r = rpc::scheduler::WithVersion(api::v1::RegisterNodeRequest());
  r.set_node(node);
  r.mutable_total()->set_milli_cpu(milli_cpu);
  r.mutable_total()->set_memory_bytes(memory_bytes);
  r.set_watermark(watermark);
  r.set_agent_address("127.0.0.1:1");
  return r;
}

// A stolen node certificate re-registers its node with an enormous total (or a watermark of 1)
// to pull every placement and migration to itself: the node keeps its size, over real TLS.
// Lowering is the agent's to do; raising again, or more than the node had, takes the admin. An
// UpdateNode asking to raise is refused; a registration asking for more is lowered, so an agent
// that restarts with its old config after the admin shrank its node still registers its address.
TEST_F(AuthzTest, AnAgentCannotRaiseItsNodesTotalOrWatermark) {
  std::unique_ptr<Service> a = Client("node-a", kNodeA);
  std::unique_ptr<Service> admin = Client("admin", kAdmin);
  const double watermark = ledger_->GetNode("a")->watermark_fraction;
  ASSERT_LT(watermark, 1);

  auto kept = [&](absl::StatusOr<api::v1::RegisterNodeResponse> r, const std::string& address) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->node().total().milli_cpu(), 8000);
    EXPECT_EQ(r->node().total().memory_bytes(), 32 * kGiB);
    EXPECT_EQ(r->node().watermark_fraction(), watermark);
    EXPECT_EQ(ledger_->GetNode("a")->total, (core::Resources{8000, 32 * kGiB}));
    EXPECT_EQ(ledger_->GetNode("a")->watermark_fraction, watermark);
    EXPECT_EQ(ledger_->GetNode("a")->agent_address, address);
  };
  api::v1::RegisterNodeRequest huge = Register("a", 800000, 32 * kGiB);
  huge.set_agent_address("127.0.0.1:2");
  kept(a->RegisterNode(huge), "127.0.0.1:2");
  kept(a->RegisterNode(Register("a", 8000, 4 * kTiB)), "127.0.0.1:1");
  kept(a->RegisterNode(Register("a", 8000, 32 * kGiB, 1.0)), "127.0.0.1:1");
  api::v1::UpdateNodeRequest update = rpc::scheduler::WithVersion(api::v1::UpdateNodeRequest());
  update.set_node("a");
  update.mutable_total()->set_milli_cpu(64000);
  update.mutable_total()->set_memory_bytes(32 * kGiB);
  ExpectDenied(a->UpdateNode(update), kNodeA, "raise the total of node a");
  EXPECT_EQ(ledger_->GetNode("a")->total, (core::Resources{8000, 32 * kGiB}));

  // The same size again (an agent restarting; the default watermark keeps the node's), or less.
  absl::StatusOr<api::v1::RegisterNodeResponse> same =
      a->RegisterNode(Register("a", 8000, 32 * kGiB));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->node().watermark_fraction(), watermark);
  ASSERT_TRUE(a->RegisterNode(Register("a", 4000, 16 * kGiB)).ok());
  api::v1::RegisterNodeRequest old_config = Register("a", 8000, 32 * kGiB);
  old_config.set_agent_address("127.0.0.1:3");
  ASSERT_TRUE(a->RegisterNode(old_config).ok());
  EXPECT_EQ(ledger_->GetNode("a")->total, (core::Resources{4000, 16 * kGiB}));
  EXPECT_EQ(ledger_->GetNode("a")->agent_address, "127.0.0.1:3");
  ExpectDenied(a->UpdateNode(update), kNodeA, "from 4000m/16GiB to 64000m/32GiB");
  // The admin may.
  absl::StatusOr<api::v1::RegisterNodeResponse> raised =
      admin->RegisterNode(Register("a", 16000, 64 * kGiB, 0.95));
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(ledger_->GetNode("a")->total, (core::Resources{16000, 64 * kGiB}));
  EXPECT_EQ(authz_->Denials()["RegisterNode"], 0);
  EXPECT_EQ(authz_->Denials()["UpdateNode"], 2);
}

// A node the scheduler does not know yet: its agent registers it within the operator's cap.
TEST(NodeCapTest, ANewNodeIsRegisteredWithinTheCap) {
  auto ledger = *ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>());
  RequestHandler handler(*ledger, core::Resources{250, kGiB});
  Authz authz(handler, [&](const std::string& vm) { return ledger->GetVm(vm); },
              {.max_node_total = {16000, 64 * kGiB}});
  std::shared_ptr<Service> c = authz.For("spiffe://test/node/c");
  ExpectDenied(c->RegisterNode(Register("c", 1000000, 64 * kGiB)), "spiffe://test/node/c",
               "the operator's cap for a new node is 16000m/64GiB");
  EXPECT_FALSE(ledger->GetNode("c").ok());
  ASSERT_TRUE(c->RegisterNode(Register("c", 16000, 64 * kGiB)).ok());
  // The admin is not capped.
  EXPECT_TRUE(authz.For(kAdmin)->RegisterNode(Register("d", 1000000, 4 * kTiB)).ok());
}

// Identities of another trust domain are refused whatever they name, admin included.
TEST(TrustDomainTest, OtherTrustDomainsAreRefused) {
  auto ledger = *ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>());
  ASSERT_TRUE(ledger->RegisterNode({.name = "a", .total = {8000, 32 * kGiB}}).ok());
  RequestHandler handler(*ledger, core::Resources{250, kGiB});
  Authz authz(handler, [&](const std::string& vm) { return ledger->GetVm(vm); },
              {.trust_domain = "test"});
  api::v1::PlaceVmRequest place = rpc::scheduler::WithVersion(api::v1::PlaceVmRequest());
  place.set_vm("v");
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(2);
  ExpectDenied(authz.For("spiffe://staging/admin")->PlaceVm(place), "spiffe://staging/admin",
               "only identities of trust domain test may");
  api::v1::MigrationOrdersRequest orders =
      rpc::scheduler::WithVersion(api::v1::MigrationOrdersRequest());
  orders.set_node("a");
  ExpectDenied(authz.For("spiffe://staging/node/a")->GetMigrationOrders(orders),
               "spiffe://staging/node/a", "GetMigrationOrders");
  ExpectDenied(authz.For("")->GetMigrationOrders(orders), "a caller without an identity",
               "trust domain test");
  EXPECT_TRUE(authz.For(kNodeA)->GetMigrationOrders(orders).ok());
  EXPECT_TRUE(authz.For(kAdmin)->PlaceVm(place).ok());
  EXPECT_EQ(authz.Denials()["GetMigrationOrders"], 2);
}

// The admin has a bucket of its own, like any identity: a runaway admin script is limited too,
// and neither it nor an agent touches the other's.
TEST(RateLimitTest, TheAdminIsLimitedOnItsOwn) {
  auto ledger = *ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>());
  ASSERT_TRUE(ledger->RegisterNode({.name = "a", .total = {8000, 32 * kGiB}}).ok());
  RequestHandler handler(*ledger, core::Resources{250, kGiB});
  ManualClock clock;
  Authz authz(handler, [&](const std::string& vm) { return ledger->GetVm(vm); },
              {.rate = 1, .burst = 2, .clock = &clock});
  const api::v1::ListRequest all = rpc::scheduler::WithVersion(api::v1::ListRequest());
  std::shared_ptr<Service> admin = authz.For(kAdmin);
  EXPECT_TRUE(admin->ListNodes(all).ok());
  EXPECT_TRUE(admin->ListNodes(all).ok());
  absl::StatusOr<api::v1::ListNodesResponse> limited = admin->ListNodes(all);
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted) << limited.status();
  EXPECT_NE(limited.status().message().find(kAdmin), std::string::npos) << limited.status();
  api::v1::MigrationOrdersRequest orders =
      rpc::scheduler::WithVersion(api::v1::MigrationOrdersRequest());
  orders.set_node("a");
  EXPECT_TRUE(authz.For(kNodeA)->GetMigrationOrders(orders).ok());
  EXPECT_EQ(authz.RateLimited(), 1);
}

}  // namespace
}  // namespace autoscale::scheduler
