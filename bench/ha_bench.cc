// The scheduler on etcd (issue 18): durable throughput against the file store, and failover time
// against a restart on the same machine, in the same run. Needs etcd (scripts/setup).
//
//   BM_Durable/store:0   durable requests per second over loopback gRPC, the ledger on the file
//                        store (one fdatasync per group commit): the baseline
//   BM_Durable/store:1   the same through an HaScheduler leading a 3-member etcd cluster on
//                        loopback (one transaction, fenced on the leader's key, per group commit)
//   BM_Failover/ha:0     a scheduler daemon on a file store killed (SIGKILL) and started again at
//                        once, as a supervisor on the same machine would: the baseline
//   BM_Failover/ha:1     two scheduler daemons on etcd (2 s lease): the leader killed, the standby
//                        takes over once the lease expires
//
// Every request changes its VM's size (2, 3, 4, 3 CU in turn), so each one is a log record. A
// failover is timed from the last answer to a request sent before the kill to the first answer to
// one sent after it, with four clients sending requests one at a time as fast as they are
// answered; median and max over the kills are the counters (each iteration is one kill). The load
// average at the end of each benchmark is reported too (the machine is shared).
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/base/units.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/ledger/etcd/layout.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/server.h"
#include "autoscale/scheduler/ha_scheduler.h"
#include "autoscale/scheduler/scheduler.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/etcd_cluster.h"
#include "autoscale/testing/runfiles.h"
#include "autoscale/testing/temp_dir.h"
#include "benchmark/benchmark.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace autoscale {
namespace {

// As in ledger_bench: Debian's Abseil runs its deadlock detector on every lock otherwise.
const bool kNoDeadlockDetection = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

constexpr int kNodes = 64, kVmsPerNode = 8;
const int64_t kSizes[] = {2, 3, 4, 3};

std::string NodeName(int n) { return absl::StrCat("node-", n); }
std::string VmName(int n, int v) { return absl::StrCat("vm-", n, "-", v); }

api::v1::Resources Cus(int64_t n) {
  api::v1::Resources r;
  r.set_milli_cpu(250 * n);
  r.set_memory_bytes(kGiB * n);
  return r;
}

void SetLoadAverage(benchmark::State& state) {
  double load[1] = {0};
  if (getloadavg(load, 1) == 1) state.counters["load1"] = load[0];
}

// Nodes with room for every VM at its largest size, and their VMs at 3 CU.
absl::Status Populate(rpc::scheduler::SchedulerService& s, int nodes) {
  for (int n = 0; n < nodes; ++n) {
    api::v1::RegisterNodeRequest node;
    node.set_protocol_version(api::v1::PROTOCOL_VERSION_1);  // in process: no client sets it
    node.set_node(NodeName(n));
    *node.mutable_total() = Cus(kVmsPerNode * 4);
    node.set_watermark(1);
    if (absl::Status st = s.RegisterNode(node).status(); !st.ok()) return st;
    for (int v = 0; v < kVmsPerNode; ++v) {
      api::v1::PlaceVmRequest place;
      place.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
      place.set_vm(VmName(n, v));
      place.set_node(NodeName(n));
      place.mutable_bounds()->set_min_cu(1);
      place.mutable_bounds()->set_max_cu(8);
      *place.mutable_initial() = Cus(3);
      if (absl::Status st = s.PlaceVm(place).status(); !st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

api::v1::PermitRequest Request(int n, int v, int64_t size) {
  api::v1::PermitRequest r;
  r.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
  r.set_node(NodeName(n));
  r.set_vm(VmName(n, v));
  r.mutable_compute_unit()->set_milli_cpu(250);
  r.mutable_compute_unit()->set_memory_bytes(kGiB);
  *r.mutable_resources() = Cus(size);
  return r;
}

// --- durable requests per second ---

// Sends `total` requests with `in_flight` outstanding over 4 channels (the callback API, as
// ledger_bench's BM_Grpc); each slot works on its own VMs, one request at a time. Returns the
// number that failed.
int64_t Drive(const std::string& address, int64_t total, int in_flight) {
  constexpr int kChannels = 4;
  std::vector<std::unique_ptr<api::v1::Scheduler::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("autoscale.bench.channel", c);  // distinct connections
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
    stubs.push_back(api::v1::Scheduler::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<api::v1::PermitRequest> requests;
  for (int64_t size : kSizes) {
    for (int n = 0; n < kNodes; ++n) {
      for (int v = 0; v < kVmsPerNode; ++v) requests.push_back(Request(n, v, size));
    }
  }
  struct Call {
    grpc::ClientContext context;
    api::v1::PermitResponse response;
  };
  std::atomic<int64_t> next{0}, done{0}, failed{0};
  std::vector<int64_t> slot_next(in_flight);
  absl::Notification finished;
  std::function<void(int)> send = [&](int slot) {
    if (next.fetch_add(1) >= total) return;
    auto* call = new Call;
    const int64_t index = slot + (slot_next[slot]++ * in_flight);
    stubs[slot % kChannels]->async()->Request(&call->context, &requests[index % requests.size()],
                                              &call->response, [&, call, slot](grpc::Status s) {
                                                delete call;
                                                if (!s.ok()) ++failed;
                                                if (done.fetch_add(1) + 1 == total) {
                                                  finished.Notify();
                                                } else {
                                                  send(slot);
                                                }
                                              });
  };
  for (int s = 0; s < in_flight; ++s) send(s);
  finished.WaitForNotification();
  return failed.load();
}

void BM_Durable(benchmark::State& state) {
  FLAGS_minloglevel = 1;
  const bool on_etcd = state.range(0) != 0;
  constexpr int64_t kPerIteration = 20000;
  constexpr int kInFlight = 1024;
  testing::TempDir dir("ha_bench");
  std::unique_ptr<testing::EtcdCluster> etcd;
  std::unique_ptr<scheduler::Scheduler> single;
  std::unique_ptr<scheduler::HaScheduler> member;
  rpc::scheduler::SchedulerService* service = nullptr;
  std::function<uint64_t()> commits, records;
  if (!on_etcd) {
    auto store = ledger::FileStore::Open({.dir = dir.path() + "/data"});
    CHECK(store.ok()) << store.status();
    auto s = scheduler::Scheduler::Open({}, *std::move(store));
    CHECK(s.ok()) << s.status();
    single = *std::move(s);
    service = &single->service();
    commits = [&] { return single->ledger().store_stats()->fsyncs; };
    records = [&] { return single->ledger().store_stats()->records_appended; };
  } else {
    auto c = testing::EtcdCluster::Start({.members = 3});
    if (!c.ok()) {
      state.SkipWithError(std::string(c.status().message()).c_str());
      return;
    }
    etcd = *std::move(c);
    // Named, not a temporary: GCC 12 at -O2 warns (maybe-uninitialized) on the temporary's
    // default members.
    scheduler::HaSchedulerOptions options;
    options.etcd = etcd->ClientOptions();
    options.prefix = "/bench";
    options.advertise = "bench";
    auto ha = scheduler::HaScheduler::Start(std::move(options));
    CHECK(ha.ok()) << ha.status();
    member = *std::move(ha);
    for (absl::Time end = absl::Now() + absl::Seconds(30); !member->leading();) {
      CHECK(absl::Now() < end) << "the scheduler never led";
      member->Step(false);
      absl::SleepFor(absl::Milliseconds(20));
    }
    service = &member->service();
    // The store's own counters, read off the metrics page (the scheduler is the HaScheduler's).
    auto counter = [&](const std::string& name) -> uint64_t {
      const std::string page = member->MetricsText();
      const size_t at = page.find("\n" + name + " ");
      return at == std::string::npos ? 0 : std::stoull(page.substr(at + name.size() + 2));
    };
    commits = [counter] { return counter("autoscaling_ledger_fsyncs_total"); };
    records = [counter] { return counter("autoscaling_ledger_log_records_total"); };
  }
  const absl::Status populated = Populate(*service, kNodes);
  CHECK(populated.ok()) << populated;
  std::unique_ptr<rpc::Server> server = *rpc::scheduler::StartGrpcServer(*service, "127.0.0.1:0");
  const uint64_t commits_before = commits(), records_before = records();
  int64_t total = 0, failed = 0;
  for (auto _ : state) {
    failed += Drive(server->address(), kPerIteration, kInFlight);
    total += kPerIteration;
  }
  state.SetItemsProcessed(total);
  const double c = commits() - commits_before, r = records() - records_before;
  state.counters["commits"] = c;
  state.counters["records_per_commit"] = c > 0 ? r / c : 0;
  state.counters["failed"] = failed;
  SetLoadAverage(state);
  CHECK_EQ(failed, 0);
  server->Shutdown(absl::Seconds(1));
}
BENCHMARK(BM_Durable)
    ->ArgName("store")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// --- failover ---

// Clients sending requests one at a time, as fast as they are answered, through the scheduler
// client given every address; each answer's send and receive time is kept.
class Load {
 public:
  Load(const std::string& addresses, int clients) {
    for (int c = 0; c < clients; ++c) {
      threads_.emplace_back([this, addresses, c] {
        std::unique_ptr<rpc::scheduler::SchedulerService> s =
            *rpc::scheduler::NewGrpcClient(addresses, absl::Seconds(2));
        for (int i = 0; !stop_.load(); ++i) {
          const int64_t sent = Now();
          const bool ok = s->Request(Request(c, i % kVmsPerNode, kSizes[i / kVmsPerNode % 4])).ok();
          if (!ok) {
            absl::SleepFor(absl::Milliseconds(5));
            continue;
          }
          absl::MutexLock l(&mu_);
          answers_.push_back({sent, Now()});
        }
      });
    }
  }
  ~Load() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

  static int64_t Now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // From the last answer to a request sent before `t` to the first answer to one sent after it
  // (waits up to 30 s for that one).
  absl::Duration Failover(int64_t t) {
    for (absl::Time end = absl::Now() + absl::Seconds(30); absl::Now() < end;) {
      {
        absl::MutexLock l(&mu_);
        int64_t last_old = 0, first_new = 0;
        for (const auto& [sent, received] : answers_) {
          if (sent < t) last_old = std::max(last_old, received);
          if (sent >= t && (first_new == 0 || received < first_new)) first_new = received;
        }
        if (first_new != 0) return absl::Nanoseconds(first_new - last_old);
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::InfiniteDuration();
  }

 private:
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<std::pair<int64_t, int64_t>> answers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

void BM_Failover(benchmark::State& state) {
  FLAGS_minloglevel = 1;
  const bool ha = state.range(0) != 0;
  const std::string binary = testing::Runfile("examples/scheduler/scheduler");
  testing::TempDir dir("ha_bench");
  std::unique_ptr<testing::EtcdCluster> etcd;
  std::shared_ptr<ledger::etcd::EtcdClient> client;
  const int daemons = ha ? 2 : 1;
  std::vector<std::string> addresses;
  for (int i = 0; i < daemons; ++i) addresses.push_back(absl::StrCat("unix:", dir.path(), "/s", i));
  if (ha) {
    auto c = testing::EtcdCluster::Start({.members = 3});
    if (!c.ok()) {
      state.SkipWithError(std::string(c.status().message()).c_str());
      return;
    }
    etcd = *std::move(c);
    client = *ledger::etcd::EtcdClient::Connect(etcd->ClientOptions());
  }
  std::vector<std::unique_ptr<testing::Daemon>> d(daemons);
  auto start = [&](int i) {
    std::vector<std::string> argv = {binary, "--listen=" + addresses[i], "--insecure",
                                     "--metrics_port=-1", "--recovery_grace=1s"};
    if (ha) {
      argv.push_back("--store=etcd:" + etcd->Endpoints());
      argv.push_back("--etcd_prefix=/bench");
      argv.push_back("--lease_ttl=2s");
    } else {
      argv.push_back("--store=file:" + dir.path() + "/data");
    }
    auto started =
        testing::Daemon::Start({.argv = argv,
                                .log = absl::StrCat(dir.path(), "/s", i, ".log"),
                                .ready_file = absl::StrCat(dir.path(), "/s", i, ".ready")});
    CHECK(started.ok()) << started.status();
    d[i] = *std::move(started);
  };
  for (int i = 0; i < daemons; ++i) start(i);
  const std::string all = absl::StrJoin(addresses, ",");
  {
    std::unique_ptr<rpc::scheduler::SchedulerService> admin =
        *rpc::scheduler::NewGrpcClient(all, absl::Seconds(2));
    absl::Status s;
    for (absl::Time end = absl::Now() + absl::Seconds(30); absl::Now() < end;) {
      s = Populate(*admin, 4);
      if (s.ok()) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    CHECK(s.ok()) << s;
  }
  auto leader = [&]() -> int {
    if (!ha) return 0;
    const std::string p = ledger::etcd::Keys("/bench").ElectionPrefix();
    etcdserverpb::RangeRequest r;
    r.set_key(p);
    r.set_range_end(ledger::etcd::PrefixEnd(p));
    r.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
    r.set_sort_target(etcdserverpb::RangeRequest::CREATE);
    r.set_limit(1);
    auto q = client->Range(r);
    if (!q.ok() || q->kvs_size() == 0) return -1;
    for (int i = 0; i < daemons; ++i) {
      if (q->kvs(0).value() == addresses[i]) return i;
    }
    return -1;
  };
  Load load(all, 4);
  std::vector<double> seconds;
  for (auto _ : state) {
    absl::SleepFor(absl::Milliseconds(1500));  // load runs on the leader
    int l = leader();
    for (absl::Time end = absl::Now() + absl::Seconds(10); l < 0 && absl::Now() < end;
         l = leader()) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    CHECK_GE(l, 0) << "no scheduler leads";
    const int64_t t = Load::Now();
    d[l]->Kill();
    if (!ha) start(l);  // the supervisor's restart
    const absl::Duration failover = load.Failover(t);
    CHECK(failover != absl::InfiniteDuration()) << "nothing answered after the kill";
    seconds.push_back(absl::ToDoubleSeconds(failover));
    state.SetIterationTime(seconds.back());
    if (ha) start(l);  // back as the standby
  }
  std::sort(seconds.begin(), seconds.end());
  state.counters["median_s"] = seconds[seconds.size() / 2];
  state.counters["max_s"] = seconds.back();
  state.counters["min_s"] = seconds.front();
  state.counters["kills"] = seconds.size();
  SetLoadAverage(state);
}
BENCHMARK(BM_Failover)
    ->ArgName("ha")
    ->Arg(0)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Failover)
    ->ArgName("ha")
    ->Arg(1)
    ->Iterations(21)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace autoscale

BENCHMARK_MAIN();
