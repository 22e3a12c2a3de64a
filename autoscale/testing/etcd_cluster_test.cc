// The etcd test harness against real etcd: a 3-member cluster that keeps serving when its raft
// leader is killed, a member that rejoins with its data, TLS with client certificates, and a
// cluster that leaves nothing behind.
#include "autoscale/testing/etcd_cluster.h"

#include <signal.h>

#include <filesystem>

#include "absl/time/clock.h"
#include "autoscale/ledger/etcd/client.h"
#include "gtest/gtest.h"

namespace autoscale::testing {
namespace {

using ledger::etcd::EtcdClient;

std::shared_ptr<EtcdClient> Connect(ledger::etcd::EtcdOptions options) {
  absl::StatusOr<std::shared_ptr<EtcdClient>> c = EtcdClient::Connect(std::move(options));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

absl::Status Put(EtcdClient& etcd, const std::string& key, const std::string& value) {
  etcdserverpb::PutRequest put;
  put.set_key(key);
  put.set_value(value);
  return etcd.Put(put).status();
}

absl::StatusOr<std::string> Get(EtcdClient& etcd, const std::string& key) {
  etcdserverpb::RangeRequest get;
  get.set_key(key);
  absl::StatusOr<etcdserverpb::RangeResponse> r = etcd.Range(get);
  if (!r.ok()) return r.status();
  if (r->kvs_size() == 0) return absl::NotFoundError(key);
  return r->kvs(0).value();
}

TEST(EtcdCluster, SurvivesItsLeaderAndTakesAMemberBack) {
  AUTOSCALE_REQUIRE_ETCD();
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start({.members = 3});
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& etcd = **started;
  ASSERT_EQ(etcd.endpoints().size(), 3u);
  std::shared_ptr<EtcdClient> client = Connect(etcd.ClientOptions());
  ASSERT_TRUE(Put(*client, "/t/a", "1").ok());

  absl::StatusOr<int> leader = etcd.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  etcd.Kill(*leader);
  EXPECT_FALSE(etcd.Running(*leader));
  // Two of three elect a new leader and take writes.
  absl::StatusOr<int> next = absl::UnavailableError("not asked yet");
  for (absl::Time end = absl::Now() + absl::Seconds(15); absl::Now() < end;) {
    next = etcd.Leader();
    if (next.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(*next, *leader);
  absl::Status put = absl::UnavailableError("not tried");
  for (absl::Time end = absl::Now() + absl::Seconds(15); !put.ok() && absl::Now() < end;) {
    put = Put(*client, "/t/b", "2");
  }
  ASSERT_TRUE(put.ok()) << put;

  // The killed member comes back with its data and catches up.
  ASSERT_TRUE(etcd.Restart(*leader).ok()) << etcd.LogTail(*leader);
  ledger::etcd::EtcdOptions only = etcd.ClientOptions();
  only.endpoints = {etcd.endpoints()[*leader]};
  std::shared_ptr<EtcdClient> direct = Connect(only);
  absl::StatusOr<std::string> b = Get(*direct, "/t/b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, "2");
}

TEST(EtcdCluster, AFrozenMemberIsPassedBy) {
  AUTOSCALE_REQUIRE_ETCD();
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start({.members = 3});
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& etcd = **started;
  absl::StatusOr<int> leader = etcd.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  // A follower, first in the client's list: the two others keep a quorum and a leader.
  const int frozen = (*leader + 1) % 3;
  ledger::etcd::EtcdOptions options = etcd.ClientOptions();
  std::swap(options.endpoints[0], options.endpoints[frozen]);
  options.timeout = absl::Milliseconds(500);
  std::shared_ptr<EtcdClient> client = Connect(options);
  ASSERT_TRUE(Put(*client, "/t/x", "1").ok());
  // It no longer answers at all; each call moves on after its timeout.
  etcd.Signal(frozen, SIGSTOP);
  EXPECT_TRUE(Get(*client, "/t/x").ok());
  EXPECT_TRUE(Put(*client, "/t/y", "2").ok());
  etcd.Signal(frozen, SIGCONT);
}

TEST(EtcdCluster, TlsWithClientCertificates) {
  AUTOSCALE_REQUIRE_ETCD();
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started =
      EtcdCluster::Start({.members = 1, .tls = true});
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& etcd = **started;
  std::shared_ptr<EtcdClient> client = Connect(etcd.ClientOptions());
  EXPECT_TRUE(Put(*client, "/t/tls", "1").ok());

  ledger::etcd::EtcdOptions plain{.endpoints = etcd.endpoints(),
                                  .timeout = absl::Milliseconds(500)};
  std::shared_ptr<EtcdClient> plaintext = Connect(plain);
  EXPECT_FALSE(Get(*plaintext, "/t/tls").ok()) << "a plaintext client was served";

  ledger::etcd::EtcdOptions no_cert = etcd.ClientOptions();
  no_cert.cert_file.clear();
  no_cert.key_file.clear();
  no_cert.timeout = absl::Milliseconds(500);
  std::shared_ptr<EtcdClient> anonymous = Connect(no_cert);
  EXPECT_FALSE(Get(*anonymous, "/t/tls").ok()) << "a client without a certificate was served";

  ledger::etcd::EtcdOptions missing = etcd.ClientOptions();
  missing.ca_file = etcd.dir() + "/no-such-ca.pem";
  absl::StatusOr<std::shared_ptr<EtcdClient>> bad = EtcdClient::Connect(missing);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no-such-ca.pem"), absl::string_view::npos) << bad.status();
}

TEST(EtcdCluster, LeavesNothingBehind) {
  AUTOSCALE_REQUIRE_ETCD();
  std::string dir;
  ledger::etcd::EtcdOptions options;
  {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start({.members = 1});
    ASSERT_TRUE(started.ok()) << started.status();
    dir = (*started)->dir();
    options = (*started)->ClientOptions();
    EXPECT_TRUE(std::filesystem::exists(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  options.timeout = absl::Milliseconds(300);
  std::shared_ptr<EtcdClient> client = Connect(options);
  EXPECT_FALSE(Get(*client, "/t").ok()) << "a member still serves";
}

}  // namespace
}  // namespace autoscale::testing
