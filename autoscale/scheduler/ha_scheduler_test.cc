// Leader election and the active/standby scheduler against a real 3-member etcd cluster
// (autoscale/testing), the schedulers served over real gRPC on unix sockets:
//   - the oldest candidate leads; the next one leads once it resigns; a lease revoked from outside
//     (what expiry does) ends the candidacy and tells whoever depends on it;
//   - of two HaSchedulers one leads and the other answers UNAVAILABLE naming it, and a client
//     given both reaches the leader;
//   - the standby takes over with the ledger as it was (its followed copy, caught up);
//   - a leader whose lease is gone steps down, answers nothing more, and etcd holds no write of
//     its after that moment.
#include "autoscale/scheduler/ha_scheduler.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/etcd/etcd_store.pb.h"
#include "autoscale/ledger/etcd/layout.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "autoscale/scheduler/election.h"
#include "autoscale/testing/etcd_cluster.h"
#include "autoscale/testing/eventually.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale::scheduler {
namespace {

using ledger::etcd::EtcdClient;

using testing::Eventually;

class HaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::EtcdMissing().empty()) return;
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> c =
        testing::EtcdCluster::Start({.members = 3});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    AUTOSCALE_REQUIRE_ETCD();
    ASSERT_NE(cluster_, nullptr);
    etcd_ = *EtcdClient::Connect(cluster_->ClientOptions());
    prefix_ =
        absl::StrCat("/test/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // The election key holding `value`, if any.
  std::optional<etcdserverpb::KeyValue> CandidateKey(const std::string& value) {
    const std::string p = ledger::etcd::Keys(prefix_).ElectionPrefix();
    etcdserverpb::RangeRequest r;
    r.set_key(p);
    r.set_range_end(ledger::etcd::PrefixEnd(p));
    absl::StatusOr<etcdserverpb::RangeResponse> q = etcd_->Range(r);
    EXPECT_TRUE(q.ok()) << q.status();
    if (q.ok()) {
      for (const auto& kv : q->kvs()) {
        if (kv.value() == value) return kv;
      }
    }
    return std::nullopt;
  }

  std::unique_ptr<Election> Candidate(const std::string& value,
                                      std::function<void()> on_lost = {}) {
    absl::StatusOr<std::unique_ptr<Election>> e =
        Election::Start(etcd_, {.prefix = prefix_,
                                .value = value,
                                .lease_ttl = absl::Seconds(2),
                                .on_lost = std::move(on_lost)});
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  static testing::EtcdCluster* cluster_;
  std::shared_ptr<EtcdClient> etcd_;
  std::string prefix_;
};

testing::EtcdCluster* HaTest::cluster_ = nullptr;

TEST_F(HaTest, TheOldestCandidateLeadsAndTheNextLeadsOnceItResigns) {
  std::unique_ptr<Election> a = Candidate("a:1");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->leading());
  EXPECT_EQ(a->leader(), "a:1");
  std::unique_ptr<Election> b = Candidate("b:1");
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->leading());
  EXPECT_EQ(b->leader(), "a:1");
  EXPECT_LT(a->fence().create_revision, b->fence().create_revision);
  EXPECT_TRUE(a->LeaseValid());

  a->Resign();
  EXPECT_TRUE(a->lost());
  EXPECT_FALSE(a->LeaseValid());
  // The watch wakes b at once; no lease has to expire.
  ASSERT_TRUE(Eventually([&] { return b->leading(); }, absl::Seconds(5)));
  EXPECT_EQ(b->leader(), "b:1");
  EXPECT_FALSE(CandidateKey("a:1").has_value());
}

TEST_F(HaTest, ALostLeaseEndsTheCandidacyAndSaysSo) {
  std::atomic<int> told{0};
  std::unique_ptr<Election> a = Candidate("a:1", [&] { ++told; });
  std::unique_ptr<Election> b = Candidate("b:1");
  ASSERT_TRUE(a->leading());
  // Renewals keep it alive well past its TTL.
  absl::SleepFor(absl::Seconds(3));
  EXPECT_TRUE(a->LeaseValid());
  EXPECT_FALSE(a->lost());
  // What expiry does: the lease and its key are gone.
  ASSERT_TRUE(etcd_->LeaseRevoke(a->lease_id()).ok());
  ASSERT_TRUE(Eventually([&] { return a->lost(); }, absl::Seconds(5)));
  EXPECT_FALSE(a->leading());
  EXPECT_FALSE(a->LeaseValid());
  // lost() turns true just before on_lost runs on the election's thread.
  ASSERT_TRUE(Eventually([&] { return told.load() > 0; }, absl::Seconds(5)));
  ASSERT_TRUE(Eventually([&] { return b->leading(); }, absl::Seconds(5)));
  EXPECT_EQ(told.load(), 1);
}

// Two HaSchedulers, each running its loop on a thread and served over gRPC on a unix socket.
class HaSchedulerTest : public HaTest {
 protected:
  struct Member {
    std::string address;
    std::unique_ptr<HaScheduler> ha;
    std::unique_ptr<rpc::Server> server;
    std::atomic<bool> stop{false};
    std::thread loop;
  };

  void TearDown() override {
    for (auto& m : members_) StopMember(*m);
  }

  Member& StartMember(const std::string& name) {
    auto m = std::make_unique<Member>();
    m->address = absl::StrCat("unix:", dir_.path(), "/", name, ".sock");
    absl::StatusOr<std::unique_ptr<HaScheduler>> ha =
        HaScheduler::Start({.scheduler = {.ledger = {.placement = {.randomize = false}}},
                            .etcd = cluster_->ClientOptions(),
                            .prefix = prefix_,
                            .advertise = m->address,
                            .lease_ttl = absl::Seconds(2)});
    EXPECT_TRUE(ha.ok()) << ha.status();
    m->ha = *std::move(ha);
    absl::StatusOr<std::unique_ptr<rpc::Server>> server =
        rpc::scheduler::StartGrpcServer(m->ha->service(), m->address);
    EXPECT_TRUE(server.ok()) << server.status();
    m->server = *std::move(server);
    Member* raw = m.get();
    m->loop = std::thread([raw] {
      raw->ha->Run(absl::Milliseconds(200), [raw](absl::Duration d) {
        absl::SleepFor(d);
        return raw->stop.load();
      });
    });
    members_.push_back(std::move(m));
    return *raw;
  }

  // A clean stop: the loop ends, the server stops, the scheduler resigns.
  void StopMember(Member& m) {
    if (!m.loop.joinable()) return;
    m.stop = true;
    m.loop.join();
    m.server->Shutdown(absl::Seconds(1));
    EXPECT_TRUE(m.ha->Stop().ok());
  }

  std::unique_ptr<rpc::scheduler::SchedulerService> Client() {
    std::string all;
    for (auto& m : members_) absl::StrAppend(&all, all.empty() ? "" : ",", m->address);
    return *rpc::scheduler::NewGrpcClient(all, absl::Seconds(3));
  }

  static void Populate(rpc::scheduler::SchedulerService& s, int vms) {
    api::v1::RegisterNodeRequest node;
    node.set_node("n1");
    node.mutable_total()->set_milli_cpu(16000);
    node.mutable_total()->set_memory_bytes(64 * kGiB);
    absl::StatusOr<api::v1::RegisterNodeResponse> registered = s.RegisterNode(node);
    ASSERT_TRUE(registered.ok()) << registered.status();
    for (int i = 0; i < vms; ++i) {
      api::v1::PlaceVmRequest place;
      place.set_vm(absl::StrCat("vm", i));
      place.mutable_bounds()->set_min_cu(1);
      place.mutable_bounds()->set_max_cu(4);
      absl::StatusOr<api::v1::PlaceVmResponse> p = s.PlaceVm(place);
      ASSERT_TRUE(p.ok()) << p.status();
    }
  }

  static absl::StatusOr<api::v1::PermitResponse> Grow(rpc::scheduler::SchedulerService& s,
                                                      const std::string& vm, int cus) {
    api::v1::PermitRequest r;
    r.set_node("n1");
    r.set_vm(vm);
    r.mutable_compute_unit()->set_milli_cpu(250);
    r.mutable_compute_unit()->set_memory_bytes(kGiB);
    r.mutable_resources()->set_milli_cpu(250 * cus);
    r.mutable_resources()->set_memory_bytes(kGiB * cus);
    return s.Request(r);
  }

  Member* Leader() {
    for (auto& m : members_) {
      if (m->ha->leading()) return m.get();
    }
    return nullptr;
  }

  testing::TempDir dir_{"ha"};
  std::vector<std::unique_ptr<Member>> members_;
};

TEST_F(HaSchedulerTest, OneLeadsAndTheOtherSendsClientsToIt) {
  Member& a = StartMember("a");
  Member& b = StartMember("b");
  ASSERT_TRUE(Eventually([&] { return Leader() != nullptr; }));
  Member& leader = *Leader();
  Member& standby = &leader == &a ? b : a;
  ASSERT_TRUE(Eventually([&] { return standby.ha->leader() == leader.address; }));
  absl::StatusOr<api::v1::StatusResponse> refused = standby.ha->service().GetStatus({});
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_EQ(rpc::scheduler::LeaderOf(refused.status()), leader.address);

  // A client given both, the standby first, lands on the leader.
  std::string both = standby.address + "," + leader.address;
  std::unique_ptr<rpc::scheduler::SchedulerService> client =
      *rpc::scheduler::NewGrpcClient(both, absl::Seconds(3));
  ASSERT_NO_FATAL_FAILURE(Populate(*client, 3));
  absl::StatusOr<api::v1::PermitResponse> permit = Grow(*client, "vm0", 3);
  ASSERT_TRUE(permit.ok()) << permit.status();
  EXPECT_EQ(permit->permit().milli_cpu(), 750);
  // The node lifecycle calls are routed too: the standby names the leader, which serves them.
  api::v1::CordonNodeRequest cordon;
  cordon.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  cordon.set_node("n1");
  cordon.set_cordon(true);
  absl::StatusOr<api::v1::CordonNodeResponse> not_here = standby.ha->service().CordonNode(cordon);
  ASSERT_FALSE(not_here.ok());
  EXPECT_EQ(rpc::scheduler::LeaderOf(not_here.status()), leader.address) << not_here.status();
  absl::StatusOr<api::v1::CordonNodeResponse> cordoned = client->CordonNode(cordon);
  ASSERT_TRUE(cordoned.ok()) << cordoned.status();
  EXPECT_TRUE(cordoned->node().cordoned());
  EXPECT_NE(standby.ha->MetricsText().find("autoscaling_scheduler_leading 0"), std::string::npos);
  EXPECT_NE(leader.ha->MetricsText().find("autoscaling_scheduler_leading 1"), std::string::npos);
}

TEST_F(HaSchedulerTest, TheStandbyTakesOverWithTheLedgerAsItWas) {
  StartMember("a");
  StartMember("b");
  ASSERT_TRUE(Eventually([&] { return Leader() != nullptr; }));
  std::unique_ptr<rpc::scheduler::SchedulerService> client = Client();
  ASSERT_NO_FATAL_FAILURE(Populate(*client, 10));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Grow(*client, absl::StrCat("vm", i), 1 + i % 4).ok());
  absl::StatusOr<api::v1::ListVmsResponse> before = client->ListVms({});
  ASSERT_TRUE(before.ok());

  Member* old_leader = Leader();
  StopMember(*old_leader);  // resigns: no lease has to expire
  ASSERT_TRUE(Eventually([&] { return Leader() != nullptr; }, absl::Seconds(10)));
  Member* new_leader = Leader();
  ASSERT_NE(new_leader, old_leader);
  // The takeover is counted just after the new leader starts serving.
  EXPECT_TRUE(Eventually([&] { return new_leader->ha->counters().takeovers == 1; }))
      << new_leader->ha->counters().takeovers;
  absl::StatusOr<api::v1::ListVmsResponse> after = client->ListVms({});
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->vms_size(), before->vms_size());
  for (int i = 0; i < after->vms_size(); ++i) {
    EXPECT_EQ(after->vms(i).vm(), before->vms(i).vm());
    EXPECT_EQ(after->vms(i).permit().milli_cpu(), before->vms(i).permit().milli_cpu());
  }
  // And it grants.
  absl::StatusOr<api::v1::PermitResponse> permit = Grow(*client, "vm0", 2);
  ASSERT_TRUE(permit.ok()) << permit.status();
}

TEST_F(HaSchedulerTest, ALeaderWhoseLeaseIsGoneStepsDownAndNeverWritesAgain) {
  StartMember("a");
  StartMember("b");
  ASSERT_TRUE(Eventually([&] { return Leader() != nullptr; }));
  std::unique_ptr<rpc::scheduler::SchedulerService> client = Client();
  ASSERT_NO_FATAL_FAILURE(Populate(*client, 4));
  Member* old_leader = Leader();
  std::optional<etcdserverpb::KeyValue> key = CandidateKey(old_leader->address);
  ASSERT_TRUE(key.has_value());

  // Its lease ends as if it had expired while the leader was cut off.
  ASSERT_TRUE(etcd_->LeaseRevoke(key->lease()).ok());
  ASSERT_TRUE(Eventually([&] {
    Member* l = Leader();
    return l != nullptr && l != old_leader;
  }));
  // It answers nothing: every call goes to the new leader.
  absl::StatusOr<api::v1::PermitResponse> refused = Grow(old_leader->ha->service(), "vm1", 2);
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Grow(*client, absl::StrCat("vm", i), 2).ok());
  EXPECT_TRUE(Eventually([&] { return old_leader->ha->counters().step_downs >= 1; }));

  // No batch in etcd was written under the old key after its lease ended.
  const ledger::etcd::Keys keys(prefix_);
  int64_t revision = 0;
  absl::StatusOr<std::vector<etcdserverpb::KeyValue>> log = ledger::etcd::RangeAll(
      *etcd_, keys.LogPrefix(), ledger::etcd::PrefixEnd(keys.LogPrefix()), &revision);
  ASSERT_TRUE(log.ok()) << log.status();
  int late = 0, new_leader_batches = 0;
  for (const auto& kv : *log) {
    ledger::etcd::LedgerBatch batch;
    ASSERT_TRUE(batch.ParseFromString(kv.value()));
    if (batch.writer() != key->key()) ++new_leader_batches;
    etcdserverpb::RangeRequest at;
    at.set_key(batch.writer());
    at.set_revision(kv.mod_revision());
    absl::StatusOr<etcdserverpb::RangeResponse> then = etcd_->Range(at);
    ASSERT_TRUE(then.ok()) << then.status();
    if (then->kvs_size() == 0) ++late;  // its writer's key did not exist when it was written
  }
  EXPECT_EQ(late, 0) << "a batch was accepted from a writer whose election key was gone";
  EXPECT_GE(new_leader_batches, 4);
}

}  // namespace
}  // namespace autoscale::scheduler
