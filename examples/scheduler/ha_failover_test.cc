// Chaos test of an active/standby scheduler group on etcd, with real processes: a 3-member etcd
// cluster on loopback, two scheduler daemons (--store=etcd:...), and clients acting as agents
// (testing::PermitAgents) that send requests as fast as they are answered, through the scheduler
// client given both addresses (it follows the leader a standby names). Then, under that load:
//   - the active scheduler is killed (SIGKILL) again and again, and restarted as the standby;
//   - the raft leader of etcd is killed and restarted;
//   - the active scheduler is frozen (SIGSTOP) past its lease, then resumed: it must neither
//     answer nor write.
// After each, with the clients paused, against what the clients saw:
//   - every acknowledged permit is in the new leader's ledger (exactly, for a VM whose last
//     request was answered; within what was asked otherwise), and no permit had to be adopted
//     from an agent (clients send their last permit only when they know it holds);
//   - no node's reservation exceeds its total;
//   - etcd's history holds no write by a scheduler that was not the leader when etcd applied it:
//     every batch and snapshot carries its writer's election key, and each run of one writer's
//     writes lies within that key's term as the oldest candidate (so at most one scheduler's
//     writes are accepted at any time, and a deposed one's never);
//   - the failover time: from the last answer of the old leader (to a request sent before the
//     kill) to the first answer of the new one (to a request sent after it).
// Bounded: 5 kills, one etcd leader kill, one freeze; about a minute.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/etcd_store.pb.h"
#include "autoscale/ledger/etcd/layout.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/scheduler/election.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/etcd_cluster.h"
#include "autoscale/testing/permit_agents.h"
#include "autoscale/testing/temp_dir.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

std::string g_scheduler;  // the daemon binary (argv[1])

constexpr int kNodes = 3, kKills = 5;
constexpr char kPrefix[] = "/chaos";

class HaFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOSCALE_REQUIRE_ETCD();
    ASSERT_FALSE(g_scheduler.empty()) << "usage: ha_failover_test PATH_TO_SCHEDULER";
    absl::StatusOr<std::unique_ptr<testing::EtcdCluster>> c =
        testing::EtcdCluster::Start({.members = 3});
    ASSERT_TRUE(c.ok()) << c.status();
    etcd_cluster_ = *std::move(c);
    etcd_ = *ledger::etcd::EtcdClient::Connect(etcd_cluster_->ClientOptions());
    for (int i = 0; i < 2; ++i) {
      addresses_[i] = absl::StrCat("unix:", dir_.path(), "/s", i, ".sock");
    }
    for (int i = 0; i < 2; ++i) ASSERT_NO_FATAL_FAILURE(StartScheduler(i));
  }

  void StartScheduler(int i) {
    absl::StatusOr<std::unique_ptr<testing::Daemon>> d = testing::Daemon::Start(
        {.argv = {g_scheduler, "--store=etcd:" + etcd_cluster_->Endpoints(),
                  absl::StrCat("--etcd_prefix=", kPrefix), "--listen=" + addresses_[i],
                  "--insecure", "--metrics_port=-1", "--lease_ttl=2s", "--recovery_grace=3s",
                  "--balance_interval=200ms", "--snapshot_every=3000",
                  // The audit below reads etcd's whole history.
                  "--etcd_compact=false"},
         .log = absl::StrCat(dir_.path(), "/scheduler", i, ".log"),
         .ready_file = absl::StrCat(dir_.path(), "/scheduler", i, ".ready")});
    ASSERT_TRUE(d.ok()) << d.status();
    daemons_[i] = *std::move(d);
  }

  // The scheduler that leads now (the oldest election key's address), or -1.
  int Leader() {
    absl::StatusOr<std::string> leader = scheduler::LeaderOf(*etcd_, kPrefix);
    for (int i = 0; i < 2; ++i) {
      if (leader.ok() && *leader == addresses_[i]) return i;
    }
    return -1;
  }

  std::unique_ptr<rpc::scheduler::SchedulerService> Client() {
    return *rpc::scheduler::NewGrpcClient(addresses_[0] + "," + addresses_[1], absl::Seconds(2));
  }

  // Reads etcd's whole history of the ledger's keys and checks that every accepted write came
  // from the leader of the moment. Returns the number of writes and of terms seen.
  void AuditWrites(int64_t* writes, int64_t* terms) {
    const ledger::etcd::Keys keys(kPrefix);
    // A marker at the end: once the watch delivers it, every earlier event was delivered.
    const std::string marker = keys.LedgerPrefix() + "~audit";
    etcdserverpb::PutRequest put;
    put.set_key(marker);
    ASSERT_TRUE(etcd_->Put(put).ok());
    struct Write {
      std::string writer;
      int64_t revision;
    };
    absl::Mutex mu;
    std::vector<Write> seen;
    bool done = false;
    etcdserverpb::WatchCreateRequest w;
    w.set_key(keys.LedgerPrefix());
    w.set_range_end(ledger::etcd::PrefixEnd(keys.LedgerPrefix()));
    w.set_start_revision(1);
    absl::StatusOr<std::unique_ptr<ledger::etcd::EtcdWatch>> watch = etcd_->Watch(
        w,
        [&](const etcdserverpb::WatchResponse& r) {
          absl::MutexLock l(&mu);
          for (const etcdserverpb::Event& e : r.events()) {
            if (e.type() != etcdserverpb::Event::PUT) continue;
            const etcdserverpb::KeyValue& kv = e.kv();
            if (kv.key() == marker) {
              done = true;
            } else if (absl::StartsWith(kv.key(), keys.LogPrefix())) {
              ledger::etcd::LedgerBatch b;
              EXPECT_TRUE(b.ParseFromString(kv.value())) << kv.key();
              seen.push_back({b.writer(), kv.mod_revision()});
            } else if (kv.key() == keys.SnapshotHead()) {
              ledger::etcd::SnapshotHead h;
              EXPECT_TRUE(h.ParseFromString(kv.value())) << kv.key();
              seen.push_back({h.writer(), kv.mod_revision()});
            }
          }
        },
        [&](absl::Status) {
          absl::MutexLock l(&mu);
          done = true;
        });
    ASSERT_TRUE(watch.ok()) << watch.status();
    {
      absl::MutexLock l(&mu);
      ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30)));
    }
    watch->reset();
    // Runs of one writer: [first revision, last revision].
    *writes = seen.size();
    *terms = 0;
    for (size_t i = 0; i < seen.size();) {
      size_t j = i;
      while (j + 1 < seen.size() && seen[j + 1].writer == seen[i].writer) ++j;
      ++*terms;
      const std::string& writer = seen[i].writer;
      ASSERT_FALSE(writer.empty()) << "a write without its writer";
      // The oldest candidate when its run began...
      etcdserverpb::RangeRequest oldest;
      oldest.set_key(keys.ElectionPrefix());
      oldest.set_range_end(ledger::etcd::PrefixEnd(keys.ElectionPrefix()));
      oldest.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
      oldest.set_sort_target(etcdserverpb::RangeRequest::CREATE);
      oldest.set_limit(1);
      oldest.set_revision(seen[i].revision);
      absl::StatusOr<etcdserverpb::RangeResponse> at_first = etcd_->Range(oldest);
      ASSERT_TRUE(at_first.ok()) << at_first.status();
      ASSERT_EQ(at_first->kvs_size(), 1)
          << "a write at revision " << seen[i].revision << " while no scheduler was a candidate";
      EXPECT_EQ(at_first->kvs(0).key(), writer)
          << "revision " << seen[i].revision << " was written by " << writer << " while "
          << at_first->kvs(0).key() << " led";
      // ... and still the same key (the same term) when it ended: it led throughout, since
      // newer candidates queue behind it and a key once gone never comes back with its revision.
      etcdserverpb::RangeRequest same;
      same.set_key(writer);
      same.set_revision(seen[j].revision);
      absl::StatusOr<etcdserverpb::RangeResponse> at_last = etcd_->Range(same);
      ASSERT_TRUE(at_last.ok()) << at_last.status();
      ASSERT_EQ(at_last->kvs_size(), 1)
          << "revision " << seen[j].revision << " was written by " << writer
          << " after its election key was gone: a deposed leader's write was accepted";
      EXPECT_EQ(at_last->kvs(0).create_revision(), at_first->kvs(0).create_revision());
      i = j + 1;
    }
  }

  testing::TempDir dir_{"hachaos"};
  std::unique_ptr<testing::EtcdCluster> etcd_cluster_;
  std::shared_ptr<ledger::etcd::EtcdClient> etcd_;
  std::string addresses_[2];
  std::unique_ptr<testing::Daemon> daemons_[2];
  testing::PermitAgents agents_{{.nodes = kNodes}};
};

TEST_F(HaFailoverTest, KillsFreezesAndEtcdFailuresLoseNothing) {
  std::unique_ptr<rpc::scheduler::SchedulerService> admin = Client();
  ASSERT_TRUE(agents_.Setup(*admin).ok());
  agents_.Start([&] { return Client(); });
  std::mt19937_64 rng(7);
  std::vector<absl::Duration> failovers;

  // 1. The active scheduler is killed, again and again; each time it comes back as the standby.
  for (int kill = 0; kill < kKills && !HasFailure(); ++kill) {
    absl::SleepFor(absl::Milliseconds(1000 + rng() % 800));
    const int leader = Leader();
    ASSERT_GE(leader, 0) << "no scheduler leads";
    absl::StatusOr<api::v1::StatusResponse> status = admin->GetStatus({});
    if (status.ok()) {
      EXPECT_EQ(status->adopted_permits(), 0u);
    }
    const int64_t t = testing::PermitAgents::NowNs();
    daemons_[leader]->Kill();
    const absl::Duration failover = agents_.Failover(t);
    ASSERT_NE(failover, absl::InfiniteDuration()) << "no scheduler answered after the kill";
    failovers.push_back(failover);
    std::cout << "kill " << kill + 1 << " of scheduler " << leader << ": failover "
              << absl::FormatDuration(failover) << "\n";
    ASSERT_NO_FATAL_FAILURE(StartScheduler(leader));
    agents_.Pause(true);
    ASSERT_NO_FATAL_FAILURE(agents_.Check(*admin, /*exact=*/false));
    agents_.Pause(false);
  }

  // 2. etcd's raft leader dies and comes back; the schedulers ride it out (the same scheduler
  // leads if its lease outlives etcd's election; a new leader's lease starts afresh).
  absl::SleepFor(absl::Seconds(1));
  absl::StatusOr<int> etcd_leader = etcd_cluster_->Leader();
  ASSERT_TRUE(etcd_leader.ok()) << etcd_leader.status();
  const int64_t etcd_kill = testing::PermitAgents::NowNs();
  LOG(INFO) << "killing etcd member " << *etcd_leader << ", the raft leader";
  etcd_cluster_->Kill(*etcd_leader);
  absl::SleepFor(absl::Seconds(3));
  LOG(INFO) << "restarting etcd member " << *etcd_leader;
  ASSERT_TRUE(etcd_cluster_->Restart(*etcd_leader).ok()) << etcd_cluster_->LogTail(*etcd_leader);
  const absl::Duration back = agents_.Failover(testing::PermitAgents::NowNs());
  ASSERT_NE(back, absl::InfiniteDuration()) << "nothing answered after etcd's member came back";
  std::cout << "etcd leader (member " << *etcd_leader << ") killed for 3 s: answers stopped for "
            << absl::FormatDuration(agents_.LongestGap(etcd_kill)) << " at most\n";
  agents_.Pause(true);
  ASSERT_NO_FATAL_FAILURE(agents_.Check(*admin, /*exact=*/false));
  agents_.Pause(false);

  // 3. The active scheduler freezes past its lease (as if cut off), then runs again.
  absl::SleepFor(absl::Seconds(1));
  const int frozen = Leader();
  ASSERT_GE(frozen, 0);
  const int64_t t_freeze = testing::PermitAgents::NowNs();
  ASSERT_EQ(::kill(daemons_[frozen]->pid(), SIGSTOP), 0);
  const absl::Duration takeover = agents_.Failover(t_freeze);
  ASSERT_NE(takeover, absl::InfiniteDuration()) << "the standby never took over";
  std::cout << "freeze of scheduler " << frozen << ": the standby answered after "
            << absl::FormatDuration(takeover) << "\n";
  ASSERT_EQ(Leader(), 1 - frozen);
  absl::SleepFor(absl::Seconds(1));  // well past its 2 s lease
  ASSERT_EQ(::kill(daemons_[frozen]->pid(), SIGCONT), 0);
  // Straight to it: whatever it still believes, it answers nothing.
  auto stub = api::v1::Scheduler::NewStub(
      grpc::CreateChannel(addresses_[frozen], grpc::InsecureChannelCredentials()));
  int probes = 0;
  for (absl::Time end = absl::Now() + absl::Seconds(1); absl::Now() < end; ++probes) {
    api::v1::PermitRequest r;
    r.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    r.set_node("node0");
    r.set_vm("vm0-0");
    r.mutable_compute_unit()->set_milli_cpu(250);
    r.mutable_compute_unit()->set_memory_bytes(kGiB);
    r.mutable_resources()->set_milli_cpu(2000);
    r.mutable_resources()->set_memory_bytes(8 * kGiB);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    api::v1::PermitResponse resp;
    const grpc::Status s = stub->Request(&context, r, &resp);
    EXPECT_FALSE(s.ok()) << "the resumed ex-leader answered a request";
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }
  EXPECT_GT(probes, 0);
  for (absl::Time end = absl::Now() + absl::Seconds(10);
       absl::Now() < end && !absl::StrContains(daemons_[frozen]->LogTail(100000), "steps down");) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  const std::string frozen_log = daemons_[frozen]->LogTail(1 << 20);
  EXPECT_TRUE(absl::StrContains(frozen_log, "steps down")) << daemons_[frozen]->LogTail();
  std::cout << "the resumed ex-leader answered none of " << probes << " probes; its log: "
            << (absl::StrContains(frozen_log, "etcd refused ledger batch")
                    ? "a write it sent on waking was refused by etcd (fenced)"
                    : "no write was pending when it learned its lease was gone")
            << "\n";
  agents_.Pause(true);
  ASSERT_NO_FATAL_FAILURE(agents_.Check(*admin, /*exact=*/false));
  agents_.Pause(false);

  // Every VM answered once more, then the clients stop; an exact comparison.
  absl::SleepFor(absl::Seconds(1));
  agents_.Stop();
  ASSERT_NO_FATAL_FAILURE(agents_.Check(*admin, /*exact=*/true));
  int64_t writes = 0, terms = 0;
  ASSERT_NO_FATAL_FAILURE(AuditWrites(&writes, &terms));
  EXPECT_GE(terms, kKills + 2) << "each kill and the freeze start a new term";
  for (auto& d : daemons_) EXPECT_EQ(d->Stop(SIGTERM, absl::Seconds(30)), 0) << d->LogTail();

  std::sort(failovers.begin(), failovers.end());
  const int64_t answered = agents_.answered();
  std::cout << "ha failover test: " << kKills << " kills, failover median "
            << absl::FormatDuration(failovers[failovers.size() / 2]) << ", max "
            << absl::FormatDuration(failovers.back()) << "; " << answered << " answered requests, "
            << agents_.failed() << " failed during failures; " << writes << " writes in etcd over "
            << terms << " terms, none by a scheduler that did not lead\n";
  EXPECT_GT(answered, 1000) << "too little load to mean anything";
  if (HasFailure()) {
    for (auto& d : daemons_) std::cout << d->LogTail();
  }
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) autoscale::g_scheduler = argv[1];
  return RUN_ALL_TESTS();
}
