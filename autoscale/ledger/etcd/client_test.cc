// The etcd client: endpoint lists and prefixes (no etcd needed), then against a real one-member
// etcd: a dead endpoint passed by, leases (grant, renew, revoke), watches (events in order, and a
// watch below the compaction canceled), transactions with compares.
#include "autoscale/ledger/etcd/client.h"

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/testing/etcd_cluster.h"
#include "gtest/gtest.h"

namespace autoscale::ledger::etcd {
namespace {

TEST(ParseEndpoints, ListsWithAndWithoutSchemes) {
  absl::StatusOr<std::vector<std::string>> e =
      ParseEndpoints("127.0.0.1:2379, http://10.0.0.2:2379,https://etcd-3:2379/");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(*e, (std::vector<std::string>{"127.0.0.1:2379", "10.0.0.2:2379", "etcd-3:2379"}));
  EXPECT_FALSE(ParseEndpoints("").ok());
  EXPECT_FALSE(ParseEndpoints("a:1,,b:2").ok());
}

TEST(PrefixEnd, NextKeyAfterEveryKeyWithThePrefix) {
  EXPECT_EQ(PrefixEnd("/a/"), "/a0");
  EXPECT_EQ(PrefixEnd("ab\xff"), "ac");
  EXPECT_EQ(PrefixEnd("\xff\xff"), std::string(1, '\0'));
}

TEST(EtcdClient, RefusesBadOptions) {
  EXPECT_FALSE(EtcdClient::Connect({}).ok());
  EXPECT_FALSE(EtcdClient::Connect({.endpoints = {"a:1"}, .cert_file = "c.pem"}).ok());
  EXPECT_FALSE(EtcdClient::Connect({.endpoints = {"a:1"}, .timeout = absl::ZeroDuration()}).ok());
}

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_ETCD();
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> c =
        testing::EtcdCluster::Start({.members = 1});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = *std::move(c);
    // A first endpoint where nothing listens (the cluster's own port, plus one, is not it).
    EtcdOptions o = cluster_->ClientOptions();
    o.endpoints.insert(o.endpoints.begin(), "127.0.0.1:1");
    o.timeout = absl::Milliseconds(500);
    absl::StatusOr<std::shared_ptr<EtcdClient>> client = EtcdClient::Connect(o);
    ASSERT_TRUE(client.ok()) << client.status();
    etcd_ = *client;
  }

  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    etcdserverpb::PutRequest put;
    put.set_key(key);
    put.set_value(value);
    put.set_lease(lease);
    absl::StatusOr<etcdserverpb::PutResponse> r = etcd_->Put(put);
    if (!r.ok()) return r.status();
    return r->header().revision();
  }

  int64_t Count(const std::string& key) {
    etcdserverpb::RangeRequest get;
    get.set_key(key);
    get.set_count_only(true);
    absl::StatusOr<etcdserverpb::RangeResponse> r = etcd_->Range(get);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->count() : -1;
  }

  std::unique_ptr<testing::EtcdCluster> cluster_;
  std::shared_ptr<EtcdClient> etcd_;
};

TEST_F(EtcdClientTest, ADeadEndpointIsPassedBy) {
  absl::StatusOr<int64_t> rev = Put("/c/a", "1");
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_EQ(Count("/c/a"), 1);
  // Alone, the dead endpoint is an error that names it.
  absl::StatusOr<std::shared_ptr<EtcdClient>> dead =
      EtcdClient::Connect({.endpoints = {"127.0.0.1:1"}, .timeout = absl::Milliseconds(300)});
  ASSERT_TRUE(dead.ok());
  absl::StatusOr<etcdserverpb::RangeResponse> r = (*dead)->Range(etcdserverpb::RangeRequest());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsTransient(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("127.0.0.1:1"), absl::string_view::npos) << r.status();
}

TEST_F(EtcdClientTest, ALeaseKeepsItsKeysUntilRevoked) {
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> lease = etcd_->LeaseGrant(absl::Seconds(5));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_GE(lease->ttl(), 5);
  ASSERT_TRUE(Put("/c/leased", "x", lease->id()).ok());
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> renewed = etcd_->LeaseKeepAlive(lease->id());
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_GT(renewed->ttl(), 0);
  ASSERT_TRUE(etcd_->LeaseRevoke(lease->id()).ok());
  EXPECT_EQ(Count("/c/leased"), 0) << "revoking the lease deletes its keys";
  renewed = etcd_->LeaseKeepAlive(lease->id());
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->ttl(), 0) << "a gone lease renews to TTL 0";
}

TEST_F(EtcdClientTest, AWatchSeesChangesInOrderAndEndsBelowTheCompaction) {
  // A watch starts on the endpoint that answered last: have one answer.
  ASSERT_TRUE(Put("/c/start", "").ok());
  absl::Mutex mu;
  std::vector<std::string> seen;
  bool ended = false;
  etcdserverpb::WatchCreateRequest w;
  w.set_key("/c/w/");
  w.set_range_end(PrefixEnd("/c/w/"));
  absl::StatusOr<std::unique_ptr<EtcdWatch>> watch = etcd_->Watch(
      w,
      [&](const etcdserverpb::WatchResponse& r) {
        absl::MutexLock l(&mu);
        for (const auto& e : r.events()) {
          seen.push_back(absl::StrCat(e.type() == etcdserverpb::Event::PUT ? "put " : "delete ",
                                      e.kv().key()));
        }
      },
      [&](absl::Status) {
        absl::MutexLock l(&mu);
        ended = true;
      });
  ASSERT_TRUE(watch.ok()) << watch.status();
  absl::SleepFor(absl::Milliseconds(200));  // the watch is created on the server
  ASSERT_TRUE(Put("/c/w/1", "a").ok());
  ASSERT_TRUE(Put("/c/other", "b").ok());
  absl::StatusOr<int64_t> last = Put("/c/w/2", "c");
  ASSERT_TRUE(last.ok());
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("/c/w/1");
  ASSERT_TRUE(etcd_->DeleteRange(del).ok());
  {
    absl::MutexLock l(&mu);
    mu.AwaitWithTimeout(absl::Condition(
                            +[](std::vector<std::string>* s) { return s->size() >= 3; }, &seen),
                        absl::Seconds(10));
    EXPECT_EQ(seen, (std::vector<std::string>{"put /c/w/1", "put /c/w/2", "delete /c/w/1"}));
  }
  watch->reset();

  // Below the compaction: the server cancels the watch and says so.
  ASSERT_TRUE(etcd_->Compact(*last).ok());
  EXPECT_TRUE(etcd_->Compact(*last).ok()) << "compacting again is no error";
  int64_t compact_revision = 0;
  w.set_start_revision(1);
  watch = etcd_->Watch(
      w,
      [&](const etcdserverpb::WatchResponse& r) {
        absl::MutexLock l(&mu);
        if (r.compact_revision() > 0) compact_revision = r.compact_revision();
      },
      [](absl::Status) {});
  ASSERT_TRUE(watch.ok());
  absl::MutexLock l(&mu);
  mu.AwaitWithTimeout(absl::Condition(
                          +[](int64_t* r) { return *r > 0; }, &compact_revision),
                      absl::Seconds(10));
  EXPECT_EQ(compact_revision, *last);
}

TEST_F(EtcdClientTest, ATransactionComparesWhenApplied) {
  absl::StatusOr<int64_t> created = Put("/c/fence", "me");
  ASSERT_TRUE(created.ok());
  auto fenced_put = [&](int64_t fence_revision) {
    etcdserverpb::TxnRequest t;
    etcdserverpb::Compare* c = t.add_compare();
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_target(etcdserverpb::Compare::CREATE);
    c->set_key("/c/fence");
    c->set_create_revision(fence_revision);
    etcdserverpb::PutRequest* put = t.add_success()->mutable_request_put();
    put->set_key("/c/data");
    put->set_value("written");
    return etcd_->Txn(t);
  };
  absl::StatusOr<etcdserverpb::TxnResponse> ok = fenced_put(*created);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->succeeded());
  absl::StatusOr<etcdserverpb::TxnResponse> stale = fenced_put(*created - 1);
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->succeeded());
}

}  // namespace
}  // namespace autoscale::ledger::etcd
