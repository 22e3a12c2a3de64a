// The ledger's throughput. The issue's targets: >= 2 million in-process requests per second and
// >= 20,000 durable requests per second over gRPC on the project's 2-core machine.
//
//   BM_Ledger/threads:N          in-process requests on a ledger in memory; each thread drives
//                                the agents of its own nodes (as the scheduler's threads would
//                                serve different nodes)
//   BM_Ledger_SharedNodes/...    the same, every thread on every node (nodes contend)
//   BM_GlobalMutexMap/threads:N  the baseline: the same grant rule over one std::map behind one
//                                global mutex
//   BM_Grpc/fsync:1              end to end over loopback gRPC: many concurrent requests (callback
//                                client, 256 in flight), each a change the ledger logs and
//                                fdatasync's before answering (group commit); fsync:0 is the same
//                                without fsync, to show its cost
//
// Every request changes its VM's size (alternating 2, 3, 4, 3 CU), so each one is a real grant
// or decrease (and a log record on the durable path).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/scheduler/grpc_server.h"
#include "autoscale/rpc/tls.h"
#include "autoscale/scheduler/request_handler.h"
#include "autoscale/testing/test_ca.h"
#include "benchmark/benchmark.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::ledger {
namespace {

// Debian's Abseil is built without NDEBUG, so absl::Mutex runs its deadlock detector (a global
// graph behind a global lock) on every lock, in the ledger and in gRPC. The daemon turns it off
// too (examples/scheduler/scheduler_main.cc).
const bool kNoDeadlockDetection = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

const Resources kCu{250, kGiB};
constexpr int kNodesPerThread = 16, kVmsPerNode = 8;
const int64_t kSizes[] = {2, 3, 4, 3};

std::string NodeName(int n) { return absl::StrCat("node-", n); }
std::string VmName(int n, int v) { return absl::StrCat("vm-", n, "-", v); }

// Requests cycling through every VM of `nodes`, each a different size than the VM's last one.
std::vector<PermitRequest> Cycle(const std::vector<int>& nodes) {
  std::vector<PermitRequest> out;
  for (int64_t size : kSizes) {
    for (int n : nodes) {
      for (int v = 0; v < kVmsPerNode; ++v) {
        out.push_back({.node = NodeName(n),
                       .vm = VmName(n, v),
                       .compute_unit = kCu,
                       .resources = kCu * size,
                       .last_permit = std::nullopt});
      }
    }
  }
  return out;
}

void Populate(Ledger& ledger, int nodes) {
  for (int n = 0; n < nodes; ++n) {
    // Room for every VM at its largest size: every increase is granted in full.
    CHECK(
        ledger.RegisterNode({.name = NodeName(n), .total = kCu * (kVmsPerNode * 4), .watermark = 1})
            .ok());
    for (int v = 0; v < kVmsPerNode; ++v) {
      CHECK(
          ledger
              .PlaceVm(
                  {.name = VmName(n, v), .bounds = {1, 8}, .compute_unit = kCu, .initial = kCu * 3},
                  NodeName(n))
              .ok());
    }
  }
}

// --- in process ---

Ledger* g_ledger = nullptr;
std::vector<std::vector<PermitRequest>> g_requests;

void LedgerBench(benchmark::State& state, bool shared_nodes) {
  const int threads = state.threads();
  if (state.thread_index() == 0) {
    g_ledger = new Ledger(LedgerOptions{});
    Populate(*g_ledger, threads * kNodesPerThread);
    g_requests.assign(threads, {});
    for (int t = 0; t < threads; ++t) {
      std::vector<int> nodes;
      for (int n = 0; n < threads * kNodesPerThread; ++n) {
        if (shared_nodes || n % threads == t) nodes.push_back(n);
      }
      g_requests[t] = Cycle(nodes);
    }
  }
  // (Google Benchmark starts all threads' loops together, after thread 0's setup.)
  size_t i = 0;
  for (auto _ : state) {
    const std::vector<PermitRequest>& mine = g_requests[state.thread_index()];
    absl::StatusOr<Permit> p = g_ledger->Request(mine[i]);
    benchmark::DoNotOptimize(p);
    if (++i == mine.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    CHECK(g_ledger->CheckInvariants().ok());
    delete g_ledger;
    g_ledger = nullptr;
  }
}

void BM_Ledger(benchmark::State& state) { LedgerBench(state, false); }
void BM_Ledger_SharedNodes(benchmark::State& state) { LedgerBench(state, true); }
BENCHMARK(BM_Ledger)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Ledger_SharedNodes)->Threads(2)->UseRealTime();

// The baseline: one mutex, one ordered map of VMs, nodes in another; the same rule (whole CUs
// up to free capacity, per resource) without overcommit.
class GlobalMutexMap {
 public:
  explicit GlobalMutexMap(int nodes) {
    for (int n = 0; n < nodes; ++n) {
      nodes_[NodeName(n)] = {kCu * (kVmsPerNode * 4), kCu * (3 * kVmsPerNode)};
      for (int v = 0; v < kVmsPerNode; ++v) vms_[NodeName(n) + "/" + VmName(n, v)] = kCu * 3;
    }
  }
  absl::StatusOr<Resources> Request(const PermitRequest& r) {
    std::lock_guard<std::mutex> l(mu_);
    auto node = nodes_.find(r.node);
    if (node == nodes_.end()) return absl::NotFoundError(r.node);
    auto vm = vms_.find(r.node + "/" + r.vm);
    if (vm == vms_.end()) return absl::NotFoundError(r.vm);
    auto& [total, reserved] = node->second;
    Resources& have = vm->second;
    auto grant = [](int64_t h, int64_t w, int64_t step, int64_t free) {
      if (w <= h) return w;
      return h + std::min(w - h, free / step * step);
    };
    const Resources free = total - reserved;
    const Resources next{
        grant(have.milli_cpu, r.resources.milli_cpu, kCu.milli_cpu, free.milli_cpu),
        grant(have.memory_bytes, r.resources.memory_bytes, kCu.memory_bytes, free.memory_bytes)};
    reserved = reserved - have + next;
    have = next;
    return next;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::pair<Resources, Resources>> nodes_;  // total, reserved
  std::map<std::string, Resources> vms_;
};

GlobalMutexMap* g_baseline = nullptr;

void BM_GlobalMutexMap(benchmark::State& state) {
  const int threads = state.threads();
  if (state.thread_index() == 0) {
    g_baseline = new GlobalMutexMap(threads * kNodesPerThread);
    g_requests.assign(threads, {});
    for (int t = 0; t < threads; ++t) {
      std::vector<int> nodes;
      for (int n = t; n < threads * kNodesPerThread; n += threads) nodes.push_back(n);
      g_requests[t] = Cycle(nodes);
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    const std::vector<PermitRequest>& mine = g_requests[state.thread_index()];
    absl::StatusOr<Resources> p = g_baseline->Request(mine[i]);
    benchmark::DoNotOptimize(p);
    if (++i == mine.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete g_baseline;
    g_baseline = nullptr;
  }
}
BENCHMARK(BM_GlobalMutexMap)->Threads(1)->Threads(2)->UseRealTime();

// --- over gRPC, durable ---

void BM_Grpc(benchmark::State& state) {
  FLAGS_minloglevel = 1;
  const bool sync = state.range(0) != 0;
  // Mutual TLS (a CA made with openssl for this run) against plaintext, in the same run.
  const bool tls = state.range(1) != 0;
  constexpr int kNodes = 64, kInFlight = 1024, kChannels = 4, kPerIteration = 40000;
  const std::string dir = absl::StrCat("/tmp/ledger_bench.", getpid());
  std::filesystem::remove_all(dir);
  std::unique_ptr<Ledger> ledger = *Ledger::Open({}, *FileStore::Open({.dir = dir, .sync = sync}));
  Populate(*ledger, kNodes);
  scheduler::RequestHandler handler(*ledger, kCu);
  rpc::Security server_security = rpc::Security::Plaintext();
  rpc::Security client_security = rpc::Security::Plaintext();
  std::unique_ptr<testing::TestCa> ca;
  if (tls) {
    ca = std::make_unique<testing::TestCa>(*testing::TestCa::Create(dir + ".pki"));
    server_security = *rpc::Security::MutualTls(*ca->Issue("scheduler", "spiffe://b/scheduler"));
    client_security = *rpc::Security::MutualTls(*ca->Issue("node", "spiffe://b/node/n0"));
  }
  std::unique_ptr<rpc::Server> server =
      *rpc::scheduler::StartGrpcServer(handler, "127.0.0.1:0", server_security);
  std::vector<std::unique_ptr<api::v1::Scheduler::Stub>> stubs;
  for (int c = 0; c < kChannels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("autoscale.bench.channel", c);  // distinct channels, distinct connections
    // What an agent's client would set too: no transparent retries, no client-side filters
    // beyond what the calls need.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
    stubs.push_back(api::v1::Scheduler::NewStub(grpc::CreateCustomChannel(
        server->address(), rpc::ChannelCredentials(client_security), args)));
  }
  std::vector<api::v1::PermitRequest> requests;
  for (const PermitRequest& r : Cycle([] {
         std::vector<int> all;
         for (int n = 0; n < kNodes; ++n) all.push_back(n);
         return all;
       }())) {
    api::v1::PermitRequest a;
    a.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    a.set_node(r.node);
    a.set_vm(r.vm);
    a.mutable_compute_unit()->set_milli_cpu(kCu.milli_cpu);
    a.mutable_compute_unit()->set_memory_bytes(kCu.memory_bytes);
    *a.mutable_resources() = core::ToProto(r.resources);
    requests.push_back(a);
  }

  struct Call {
    grpc::ClientContext context;
    api::v1::PermitResponse response;
  };
  std::atomic<int64_t> next{0}, done{0}, failed{0};
  const int64_t limit = kPerIteration;
  int64_t total = 0;
  absl::Notification* finished = nullptr;
  // Each slot keeps one request in flight: when one ends, it sends the next. A slot works on
  // its own VMs only (slot k: requests k, k + kInFlight, ...), so an agent never has two
  // requests at once, as a real agent would not.
  std::vector<int64_t> slot_next(kInFlight);
  std::function<void(int)> send = [&](int slot) {
    const int64_t n = next.fetch_add(1);
    if (n >= limit) return;
    auto* call = new Call;
    const int64_t index = slot + (slot_next[slot]++ * kInFlight);
    const api::v1::PermitRequest& req = requests[index % requests.size()];
    stubs[slot % kChannels]->async()->Request(&call->context, &req, &call->response,
                                              [&, call, slot](grpc::Status s) {
                                                delete call;
                                                if (!s.ok()) ++failed;
                                                if (done.fetch_add(1) + 1 == limit) {
                                                  finished->Notify();
                                                } else {
                                                  send(slot);
                                                }
                                              });
  };
  const uint64_t fsyncs_before = ledger->store_stats()->fsyncs;
  const uint64_t records_before = ledger->store_stats()->records_appended;
  for (auto _ : state) {
    absl::Notification all_done;
    finished = &all_done;
    next = 0;
    done = 0;
    for (int s = 0; s < kInFlight; ++s) send(s);
    all_done.WaitForNotification();
    total += done.load();
  }
  state.SetItemsProcessed(total);
  const double fsyncs = ledger->store_stats()->fsyncs - fsyncs_before;
  const double records = ledger->store_stats()->records_appended - records_before;
  state.counters["fsyncs"] = fsyncs;
  state.counters["records_per_fsync"] = fsyncs > 0 ? records / fsyncs : 0;
  state.counters["failed"] = failed.load();
  CHECK_EQ(failed.load(), 0);
  server->Shutdown(absl::Seconds(1));
  server.reset();
  ledger.reset();
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(dir + ".pki");
}
BENCHMARK(BM_Grpc)
    ->ArgNames({"fsync", "tls"})
    ->Args({1, 0})
    ->Args({1, 1})
    ->Args({0, 0})
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace autoscale::ledger
