// The agent without QEMU: fake VMs (autoscale/testing/fake_vm.h), the real scheduler library over
// a memory store (through rpc/scheduler's in-process client), scripted monitors behind
// rpc/monitor's in-process connector, and a manual clock for every timer the agent keeps
// (restart back-offs, order polling, the runners' states). Config reloads, a runner restarted
// after its VM could not be reached, a VM lost for good, and migrations out and in between two
// agents in this process. Waits are bounded and poll for a condition; nothing asserts a time.
#include "autoscale/agent/agent.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/rpc/agent_peer/in_process.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "autoscale/rpc/monitor/in_process.h"
#include "autoscale/rpc/scheduler/in_process.h"
#include "autoscale/scheduler/scheduler.h"
#include "autoscale/testing/eventually.h"
#include "autoscale/testing/fake_vm.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale::agent {
namespace {

using core::Resources;
using testing::Eventually;
using testing::FakeHypervisor;
using testing::FakeVm;
using testing::FakeVmDriverFactory;

constexpr Resources kCu{1000, kGiB};

Resources Cus(int n) { return kCu * n; }

// A monitor the test drives: it approves downscales (or not), and sends metrics to whichever
// agent is connected. One per VM, reached at testing::FakeMonitorAddress(vm) wherever the VM runs.
class ScriptedMonitor final : public rpc::monitor::MonitorService {
 public:
  // As monitor::AgentLink with an agent token: only an agent that presents `token` is admitted.
  void RequireToken(std::string token) {
    absl::MutexLock lock(&mu_);
    required_token_ = std::move(token);
  }
  absl::Status Admit(const std::string&, const std::string& token) override {
    absl::MutexLock lock(&mu_);
    tokens_.push_back(token);
    if (required_token_.empty() || token == required_token_) return absl::OkStatus();
    return absl::PermissionDeniedError("wrong agent token");
  }
  // The tokens agents presented, in order.
  std::vector<std::string> tokens() const {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }

  std::unique_ptr<rpc::monitor::AgentSession> Connect(
      std::shared_ptr<rpc::monitor::AgentStream> agent, const std::string&) override {
    absl::MutexLock lock(&mu_);
    if (agent_ != nullptr) agent_->Close();  // one agent at a time, as monitor::AgentLink
    agent_ = std::move(agent);
    ++connections_;
    return std::make_unique<Session>(*this);
  }

  // Sends `m` to the connected agent; false if none is.
  bool SendMetrics(const api::v1::Metrics& m) {
    absl::MutexLock lock(&mu_);
    return agent_ != nullptr && agent_->SendMetrics(m);
  }
  int connections() const {
    absl::MutexLock lock(&mu_);
    return connections_;
  }
  std::atomic<bool> approve{true};

 private:
  class Session final : public rpc::monitor::AgentSession {
   public:
    explicit Session(ScriptedMonitor& m) : m_(m) {}
    absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(
        const api::v1::DownscaleRequest&) override {
      api::v1::DownscaleResult r;
      r.set_ok(m_.approve.load());
      r.set_status(r.ok() ? "enough headroom" : "too little headroom");
      return r;
    }
    absl::Status NotifyUpscale(const api::v1::UpscaleNotification&) override {
      return absl::OkStatus();
    }

   private:
    ScriptedMonitor& m_;
  };

  mutable absl::Mutex mu_;
  std::shared_ptr<rpc::monitor::AgentStream> agent_ ABSL_GUARDED_BY(mu_);
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  std::string required_token_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> tokens_ ABSL_GUARDED_BY(mu_);
};

api::v1::Metrics Load(double load) {
  api::v1::Metrics m;
  m.set_load_avg_1m(load);
  m.set_load_avg_5m(load);
  m.set_memory_usage_bytes(kGiB / 4);
  return m;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scheduler::SchedulerOptions options;
    options.default_compute_unit = kCu;
    options.ledger.placement.randomize = false;
    options.ledger.clock = &clock_;
    auto opened = scheduler::Scheduler::Open(options, std::make_unique<ledger::MemoryStore>());
    ASSERT_TRUE(opened.ok()) << opened.status();
    scheduler_ = *std::move(opened);
    client_ = std::make_unique<rpc::scheduler::InProcessClient>(scheduler_->service());
  }

  void TearDown() override {
    for (auto& [name, node] : nodes_) node->agent->Stop();
  }

  // Registers `node` with the scheduler (total `cus` CU; watermark as a fraction, 0: default),
  // as its agent will (Config gives the agent the same).
  void RegisterNode(const std::string& node, int cus, double watermark = 0) {
    api::v1::RegisterNodeRequest r;
    r.set_node(node);
    *r.mutable_total() = core::ToProto(Cus(cus));
    r.set_watermark(watermark);
    r.set_agent_address(node + ":agent");
    ASSERT_TRUE(client_->RegisterNode(r).ok());
    registered_[node] = r;
  }

  // Places `vm` on `node` at its minimum in the ledger and starts its fake VM there.
  FakeVm& AddVm(const std::string& vm, const std::string& node, core::Bounds bounds,
                bool migratable = false, const std::string& run_state = "running") {
    api::v1::PlaceVmRequest place;
    place.set_vm(vm);
    place.mutable_bounds()->set_min_cu(bounds.min_cu);
    place.mutable_bounds()->set_max_cu(bounds.max_cu);
    place.set_node(node);
    place.set_migratable(migratable);
    absl::StatusOr<api::v1::PlaceVmResponse> p = client_->PlaceVm(place);
    EXPECT_TRUE(p.ok()) << p.status();
    monitors_[testing::FakeMonitorAddress(vm)] = std::make_unique<ScriptedMonitor>();
    return hv_.AddVm(vm, "fake:" + vm, Cus(bounds.min_cu), run_state);
  }

  static api::v1::VmConfig VmConfig(const std::string& vm, core::Bounds bounds) {
    return testing::FakeVmConfig(vm, bounds);
  }

  api::v1::AgentConfig Config(const std::string& node, std::vector<api::v1::VmConfig> vms) {
    api::v1::AgentConfig c;
    c.set_node(node);
    if (auto it = registered_.find(node); it != registered_.end()) {
      *c.mutable_node_total() = it->second.total();
      c.set_watermark(it->second.watermark());
    }
    c.set_scheduler_address("in-process");
    c.mutable_compute_unit()->set_milli_cpu(kCu.milli_cpu);
    c.mutable_compute_unit()->set_memory_bytes(kCu.memory_bytes);
    for (api::v1::VmConfig& vm : vms) *c.add_vms() = std::move(vm);
    return c;
  }

  struct Node {
    explicit Node(FakeHypervisor& hv, const std::string& name) : factory(hv, name) {}
    FakeVmDriverFactory factory;
    std::unique_ptr<Agent> agent;
  };

  // A target agent as the source reaches it, with faults the test injects into FinishIncoming.
  class FaultyPeer final : public rpc::agent_peer::MigrationPeer {
   public:
    FaultyPeer(std::shared_ptr<rpc::agent_peer::MigrationPeer> peer, AgentTest& test)
        : target_(std::move(peer)), peer_(*target_), test_(test) {}
    absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
        const api::v1::PrepareIncomingRequest& r) override {
      api::v1::PrepareIncomingRequest sent = r;
      if (test_.tamper_) test_.tamper_(sent);
      return peer_.PrepareIncoming(sent);
    }
    absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& r) override {
      if (test_.finish_failures_ > 0) {
        --test_.finish_failures_;
        return absl::UnavailableError("connection reset (injected)");
      }
      return peer_.FinishIncoming(r);
    }

   private:
    const std::shared_ptr<rpc::agent_peer::MigrationPeer> target_;
    rpc::agent_peer::InProcessClient peer_;
    AgentTest& test_;
  };

  // Starts the agent of `node` with `config` (replacing one that ran there).
  Agent& StartAgent(const std::string& node, const api::v1::AgentConfig& config) {
    if (auto it = nodes_.find(node); it != nodes_.end()) {
      it->second->agent->Stop();
      retired_.push_back(std::move(it->second));
      nodes_.erase(it);
    }
    auto n = std::make_unique<Node>(hv_, node);
    AgentOptions o;
    o.address = node + ":agent";
    o.supervise_interval = absl::Milliseconds(5);
    o.runner_max_sleep = absl::Milliseconds(10);
    o.monitor_retry = absl::Milliseconds(20);
    o.migration_timeout = migration_timeout_;
    // Agents reach each other as the gRPC server hands them over: as their caller's node.
    o.require_peer_identity = true;
    o.trust_domain = "autoscale.test";
    o.migration_retry = {.min = absl::Milliseconds(1),
                         .max = absl::Milliseconds(10),
                         .abandon_give_up = absl::Milliseconds(200)};
    n->agent = std::make_unique<Agent>(
        o, *client_, n->factory,
        [this](const std::string& address, const rpc::monitor::AgentBinding& binding,
               rpc::monitor::MonitorClient::Callbacks callbacks, absl::Duration timeout)
            -> absl::StatusOr<std::unique_ptr<rpc::monitor::MonitorClient>> {
          auto it = monitors_.find(address);
          if (it == monitors_.end()) return absl::UnavailableError("no monitor at " + address);
          return rpc::monitor::InProcessConnector(*it->second)
              .Connect(address, binding, std::move(callbacks), timeout);
        },
        [this, node](const std::string& address, const std::string& target)
            -> absl::StatusOr<std::unique_ptr<rpc::agent_peer::MigrationPeer>> {
          // As the TLS client would: only node `target`'s agent answers.
          auto it = nodes_.find(target);
          if (it == nodes_.end() || target + ":agent" != address) {
            return absl::UnavailableError("no agent of node " + target + " at " + address);
          }
          return std::make_unique<FaultyPeer>(it->second->agent->ForCaller(Identity(node)), *this);
        },
        clock_);
    Agent& agent = *n->agent;
    nodes_[node] = std::move(n);
    absl::Status started = agent.Start(config);
    EXPECT_TRUE(started.ok()) << started;
    return agent;
  }

  Node& node(const std::string& name) { return *nodes_.at(name); }
  static std::string Identity(const std::string& node) {
    return "spiffe://autoscale.test/node/" + node;
  }

  // The events of `kind` for `vm` in `agent`'s log.
  static int Count(Agent& agent, const std::string& vm, api::v1::EventKind kind) {
    int n = 0;
    for (const Event& e : agent.events().Since(0)) n += e.vm == vm && e.kind == kind;
    return n;
  }
  static bool Has(Agent& agent, const std::string& vm, api::v1::EventKind kind) {
    return Count(agent, vm, kind) > 0;
  }
  static std::string Log(Agent& agent) {
    std::string out;
    for (const Event& e : agent.events().Since(0)) {
      absl::StrAppend(&out, "\n  ", e.vm, " ", api::v1::EventKind_Name(e.kind), ": ", e.text);
    }
    return out;
  }

  static const api::v1::VmStatus* Vm(const api::v1::AgentStatus& s, const std::string& vm) {
    for (const api::v1::VmStatus& v : s.vms()) {
      if (v.vm() == vm) return &v;
    }
    return nullptr;
  }
  // Whether `agent` runs a runner for `vm` (its status has the VM with no error and a size).
  static bool Managed(Agent& agent, const std::string& vm) {
    for (const RunnerStatus& s : agent.Statuses()) {
      if (s.vm == vm) return s.current.memory_bytes > 0;
    }
    return false;
  }

  absl::StatusOr<api::v1::VmState> Ledger(const std::string& vm) {
    ASSIGN_OR_RETURN(api::v1::ListVmsResponse vms, client_->ListVms(api::v1::ListRequest()));
    for (const api::v1::VmState& v : vms.vms()) {
      if (v.vm() == vm) return v;
    }
    return absl::NotFoundError(vm + " is not in the ledger");
  }
  Resources Permit(const std::string& vm) {
    absl::StatusOr<api::v1::VmState> v = Ledger(vm);
    return v.ok() ? Resources{v->permit().milli_cpu(), v->permit().memory_bytes()} : Resources{};
  }

  // Sends `m` from vm's monitor once an agent is connected to it.
  bool SendMetrics(const std::string& vm, const api::v1::Metrics& m) {
    ScriptedMonitor& monitor = *monitors_.at(testing::FakeMonitorAddress(vm));
    return Eventually([&] { return monitor.SendMetrics(m); });
  }

  ManualClock clock_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::unique_ptr<rpc::scheduler::InProcessClient> client_;
  FakeHypervisor hv_;
  std::map<std::string, std::unique_ptr<ScriptedMonitor>> monitors_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Node>> retired_;  // stopped agents (their VMs' fakes may refer)
  std::map<std::string, api::v1::RegisterNodeRequest> registered_;
  absl::Duration migration_timeout_ = absl::Seconds(120);
  // FinishIncoming calls that fail (as a lost connection) before they reach the target.
  std::atomic<int> finish_failures_{0};
  // Changes what a source sends to PrepareIncoming (a source that is not what it should be).
  std::function<void(api::v1::PrepareIncomingRequest&)> tamper_;
};

TEST_F(AgentTest, AConfigReloadAddsRemovesAndChangesVms) {
  RegisterNode("a", 8);
  AddVm("vm1", "a", {1, 4});
  FakeVm& vm2 = AddVm("vm2", "a", {1, 4});
  Agent& agent = StartAgent("a", Config("a", {VmConfig("vm1", {1, 4})}));
  ASSERT_TRUE(Eventually([&] { return Managed(agent, "vm1"); })) << Log(agent);
  EXPECT_FALSE(Managed(agent, "vm2"));

  // A new VM gets a runner.
  ASSERT_TRUE(
      agent.UpdateConfig(Config("a", {VmConfig("vm1", {1, 4}), VmConfig("vm2", {1, 4})})).ok());
  ASSERT_TRUE(Eventually([&] { return Managed(agent, "vm2"); })) << Log(agent);
  EXPECT_TRUE(Has(agent, "", api::v1::EVENT_KIND_CONFIG_APPLIED));

  // vm1 leaves the config; vm2's minimum rises to 2 CU: the scheduler is asked, the VM grows.
  ASSERT_TRUE(agent.UpdateConfig(Config("a", {VmConfig("vm2", {2, 4})})).ok());
  ASSERT_TRUE(Eventually([&] { return Has(agent, "vm1", api::v1::EVENT_KIND_VM_REMOVED); }))
      << Log(agent);
  ASSERT_TRUE(Eventually([&] { return vm2.size() == Cus(2); })) << Log(agent);
  EXPECT_EQ(Permit("vm2"), Cus(2));
  EXPECT_TRUE(Has(agent, "vm2", api::v1::EVENT_KIND_VM_CONFIG_CHANGED));
  EXPECT_EQ(Vm(agent.Status(), "vm1"), nullptr) << "vm1 is no longer managed";
  EXPECT_FALSE(Managed(agent, "vm1"));

  // A new scaling config applies at once: a load of 1.8 is 2 CU at the default target (0.9 of a
  // vCPU per CU) and 4 CU (the maximum) at 0.3.
  ASSERT_TRUE(SendMetrics("vm2", Load(1.8)));
  ASSERT_TRUE(Eventually([&] {
    const api::v1::AgentStatus s = agent.Status();
    const api::v1::VmStatus* v = Vm(s, "vm2");
    return v != nullptr && v->has_load_avg_1m();
  }));
  EXPECT_EQ(vm2.size(), Cus(2));
  api::v1::AgentConfig eager = Config("a", {VmConfig("vm2", {2, 4})});
  eager.mutable_scaling()->set_load_average_fraction_target(0.3);
  ASSERT_TRUE(agent.UpdateConfig(eager).ok());
  ASSERT_TRUE(Eventually([&] { return vm2.size() == Cus(4); })) << Log(agent);
  EXPECT_EQ(Permit("vm2"), Cus(4));

  // A config that does not check out changes nothing, and says why.
  api::v1::AgentConfig twice = Config("a", {VmConfig("vm2", {2, 4}), VmConfig("vm2", {1, 1})});
  absl::Status refused = agent.UpdateConfig(twice);
  EXPECT_TRUE(absl::StrContains(refused.message(), "vms[1].name")) << refused;
  EXPECT_TRUE(Has(agent, "", api::v1::EVENT_KIND_CONFIG_REJECTED));
  EXPECT_TRUE(Managed(agent, "vm2"));
  api::v1::AgentConfig renamed = Config("b", {});
  EXPECT_FALSE(agent.UpdateConfig(renamed).ok()) << "the node cannot change";
}

// The scheduler learns what the config says: a VM's bounds when its runner starts and when they
// change (before, growth past the placed maximum was refused and retried forever), and the node's
// total and watermark when they change.
TEST_F(AgentTest, BoundsAndTheNodeInTheConfigReachTheScheduler) {
  RegisterNode("a", 8);
  FakeVm& vm1 = AddVm("vm1", "a", {1, 4});
  Agent& agent = StartAgent("a", Config("a", {VmConfig("vm1", {1, 5})}));
  auto ledger_bounds = [&](core::Bounds want) {
    absl::StatusOr<api::v1::VmState> v = Ledger("vm1");
    return v.ok() && v->bounds().min_cu() == want.min_cu && v->bounds().max_cu() == want.max_cu;
  };
  ASSERT_TRUE(Eventually([&] { return ledger_bounds({1, 5}); })) << Log(agent);

  api::v1::AgentConfig bigger = Config("a", {VmConfig("vm1", {1, 6})});
  *bigger.mutable_node_total() = core::ToProto(Cus(12));
  bigger.set_watermark(0.5);
  ASSERT_TRUE(agent.UpdateConfig(bigger).ok());
  ASSERT_TRUE(Eventually([&] { return ledger_bounds({1, 6}); })) << Log(agent);
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<api::v1::ListNodesResponse> nodes = client_->ListNodes(api::v1::ListRequest());
    return nodes.ok() && nodes->nodes_size() == 1 &&
           nodes->nodes(0).total().milli_cpu() == Cus(12).milli_cpu &&
           nodes->nodes(0).watermark_fraction() == 0.5;
  })) << Log(agent);
  EXPECT_TRUE(Has(agent, "vm1", api::v1::EVENT_KIND_VM_CONFIG_CHANGED));

  // The VM grows to the new maximum under a load of 8 (9 CU at 0.9 of a vCPU per CU). A request
  // made before the scheduler had the bounds is retried after its back-off (clock time).
  ASSERT_TRUE(SendMetrics("vm1", Load(8)));
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(absl::Milliseconds(100));
    return vm1.size() == Cus(6);
  })) << Log(agent);
  EXPECT_EQ(Permit("vm1"), Cus(6));
}

// A reload's timings apply to the runners already running; its compute unit cannot change while
// VMs are managed (the scheduler books each VM in the one it was placed with).
TEST_F(AgentTest, AReloadsTimingsReachRunningRunnersAndItsComputeUnitIsRefused) {
  RegisterNode("a", 8);
  AddVm("vm1", "a", {1, 4});
  api::v1::AgentConfig lazy = Config("a", {VmConfig("vm1", {1, 4})});
  lazy.mutable_timings()->mutable_scheduler_request_at_least_every()->set_seconds(600);
  Agent& agent = StartAgent("a", lazy);
  auto requests = [&] {
    const std::string line = "autoscaling_agent_scheduler_requests_total{result=\"ok\"} ";
    const std::string text = agent.MetricsText();
    const size_t at = text.find(line);
    return at == std::string::npos ? 0 : std::atoi(text.c_str() + at + line.size());
  };
  ASSERT_TRUE(Eventually([&] { return requests() >= 1; })) << Log(agent);

  api::v1::AgentConfig eager = lazy;
  eager.mutable_timings()->mutable_scheduler_request_at_least_every()->set_seconds(1);
  ASSERT_TRUE(agent.UpdateConfig(eager).ok());
  // Within a minute of clock time (far less than the old 10 minutes) it asks again, twice.
  const int before = requests();
  const absl::Time until = clock_.Now() + absl::Minutes(1);
  ASSERT_TRUE(Eventually([&] {
    if (clock_.Now() < until) clock_.Advance(absl::Milliseconds(250));
    return requests() >= before + 2;
  })) << Log(agent);

  api::v1::AgentConfig other_cu = eager;
  other_cu.mutable_compute_unit()->set_milli_cpu(2 * kCu.milli_cpu);
  absl::Status refused = agent.UpdateConfig(other_cu);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "computeUnit")) << refused;
  EXPECT_TRUE(Managed(agent, "vm1"));
}

// Bounds the VM's QEMU cannot take (more vCPUs or memory than it was started with) are refused
// with the VM and the field named; before, the scheduler granted them and every resize failed.
TEST_F(AgentTest, BoundsBeyondTheVmsSpecAreRefused) {
  api::v1::AgentConfig config = Config("a", {VmConfig("vm1", {1, 8})});
  ASSERT_TRUE(ValidateAgentConfig(config).ok()) << ValidateAgentConfig(config);

  config.mutable_vms(0)->mutable_bounds()->set_max_cu(9);  // 9 CU: 9 vCPUs of 8
  absl::Status s = ValidateAgentConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "vms[0].bounds.maxCu: VM vm1")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "spec.cpusMax")) << s;

  config.mutable_vms(0)->mutable_spec()->set_cpus_max(16);  // 9 GiB of 8
  s = ValidateAgentConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "vms[0].bounds.maxCu: VM vm1")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "spec.memorySlotsMax")) << s;
}

// VMs a node may receive are checked as its own are, without a QMP address (its agent starts
// their QEMU).
TEST_F(AgentTest, IncomingVmsAreCheckedAsTheVmsAre) {
  api::v1::AgentConfig config = Config("a", {});
  api::v1::VmConfig incoming = VmConfig("vm1", {1, 8});
  incoming.clear_qmp();
  *config.add_incoming_vms() = incoming;
  ASSERT_TRUE(ValidateAgentConfig(config).ok()) << ValidateAgentConfig(config);
  config.mutable_incoming_vms(0)->mutable_bounds()->set_max_cu(9);
  absl::Status s = ValidateAgentConfig(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "incomingVms[0].bounds.maxCu: VM vm1")) << s;
  config.mutable_incoming_vms(0)->mutable_bounds()->set_max_cu(8);
  *config.add_incoming_vms() = incoming;
  s = ValidateAgentConfig(config);
  EXPECT_TRUE(absl::StrContains(s.message(), "incomingVms[1].name: 'vm1' appears twice")) << s;
}

TEST_F(AgentTest, ARunnerWhoseVmCannotBeReachedIsRestarted) {
  RegisterNode("a", 8);
  FakeVm& vm1 = AddVm("vm1", "a", {1, 4});
  AddVm("vm2", "a", {1, 4});
  Agent& agent = StartAgent("a", Config("a", {VmConfig("vm1", {1, 4}), VmConfig("vm2", {1, 4})}));
  ASSERT_TRUE(Eventually([&] { return Managed(agent, "vm1") && Managed(agent, "vm2"); }))
      << Log(agent);
  const int opens = node("a").factory.opens();

  // The VM's QMP connection is lost: its runner notices (probing the idle VM) and is stopped.
  vm1.SetReachable(false);
  ASSERT_TRUE(Eventually([&] { return Has(agent, "vm1", api::v1::EVENT_KIND_RUNNER_RESTARTING); }))
      << Log(agent);
  EXPECT_FALSE(Managed(agent, "vm1"));
  // Nothing is retried before the back-off (clock time) has passed.
  EXPECT_EQ(node("a").factory.opens(), opens);

  vm1.SetReachable(true);
  clock_.Advance(absl::Seconds(10));  // restart_max
  ASSERT_TRUE(Eventually([&] { return Managed(agent, "vm1"); })) << Log(agent);
  EXPECT_EQ(Count(agent, "vm1", api::v1::EVENT_KIND_RUNNER_STARTED), 2);
  EXPECT_EQ(node("a").factory.opens(), opens + 1);
  // The other VM's runner was never disturbed.
  EXPECT_EQ(Count(agent, "vm2", api::v1::EVENT_KIND_RUNNER_STARTED), 1);
  EXPECT_FALSE(Has(agent, "vm2", api::v1::EVENT_KIND_RUNNER_RESTARTING));

  // The restarted runner resizes the VM again.
  ASSERT_TRUE(
      agent.UpdateConfig(Config("a", {VmConfig("vm1", {2, 4}), VmConfig("vm2", {1, 4})})).ok());
  EXPECT_TRUE(Eventually([&] { return vm1.size() == Cus(2); })) << Log(agent);
}

// The VM's agent token (VmConfig.agentTokenFile, written by whoever launched the VM) is what the
// agent presents to the VM's monitor, which admits no agent without it; an agent that restarts
// reads it again. A VM whose token file is missing gets no runner, and its error names the file.
TEST_F(AgentTest, TheVmsAgentTokenReachesItsMonitorAlsoAfterAnAgentRestart) {
  RegisterNode("a", 8);
  AddVm("vm1", "a", {1, 4});
  AddVm("vm2", "a", {1, 4});
  testing::TempDir dir("token");
  const std::string token = rpc::monitor::NewAgentToken();
  std::ofstream(dir.path() + "/vm1") << token;
  monitors_.at(testing::FakeMonitorAddress("vm1"))->RequireToken(token);
  api::v1::VmConfig vm1 = VmConfig("vm1", {1, 4});
  vm1.set_agent_token_file(dir.path() + "/vm1");
  api::v1::VmConfig vm2 = VmConfig("vm2", {1, 4});
  vm2.set_agent_token_file(dir.path() + "/vm2");
  const api::v1::AgentConfig config = Config("a", {vm1, vm2});
  auto connected = [this](Agent& agent) {
    const api::v1::AgentStatus s = agent.Status();
    const api::v1::VmStatus* v = Vm(s, "vm1");
    return v != nullptr && v->monitor_connected();
  };
  Agent* agent = &StartAgent("a", config);
  ASSERT_TRUE(Eventually([&] { return connected(*agent); })) << Log(*agent);
  ASSERT_TRUE(Eventually([&] {
    return Has(*agent, "vm2", api::v1::EVENT_KIND_RUNNER_START_FAILED);
  })) << Log(*agent);
  const api::v1::AgentStatus status = agent->Status();
  ASSERT_NE(Vm(status, "vm2"), nullptr);
  EXPECT_TRUE(absl::StrContains(Vm(status, "vm2")->error(), dir.path() + "/vm2"))
      << Vm(status, "vm2")->error();

  agent = &StartAgent("a", config);  // a new agent process: nothing but the config carries over
  ASSERT_TRUE(Eventually([&] { return connected(*agent); })) << Log(*agent);
  ScriptedMonitor& monitor = *monitors_.at(testing::FakeMonitorAddress("vm1"));
  EXPECT_EQ(monitor.connections(), 2);
  for (const std::string& t : monitor.tokens()) EXPECT_EQ(t, token);
}

// A restarted runner opens its VM with the milli-CPU the ledger grants it: the QEMU driver reads a
// partial vCPU (1250m runs 2 vCPUs) back from it instead of rounding up to whole vCPUs.
TEST_F(AgentTest, ARestartedRunnerIsOpenedWithTheMilliCpuItsVmIsGranted) {
  RegisterNode("a", 8);
  FakeVm& vm1 = AddVm("vm1", "a", {1, 4});
  Agent& agent = StartAgent("a", Config("a", {VmConfig("vm1", {1, 4})}));
  ASSERT_TRUE(Eventually([&] { return Managed(agent, "vm1"); })) << Log(agent);
  EXPECT_EQ(node("a").factory.granted_milli_cpu("fake:vm1"), Cus(1).milli_cpu);
  ASSERT_TRUE(agent.UpdateConfig(Config("a", {VmConfig("vm1", {3, 4})})).ok());
  ASSERT_TRUE(Eventually([&] { return vm1.size() == Cus(3); })) << Log(agent);

  vm1.SetReachable(false);
  ASSERT_TRUE(Eventually([&] { return Has(agent, "vm1", api::v1::EVENT_KIND_RUNNER_RESTARTING); }))
      << Log(agent);
  vm1.SetReachable(true);
  clock_.Advance(absl::Seconds(10));  // restart_max
  ASSERT_TRUE(Eventually([&] {
    return Count(agent, "vm1", api::v1::EVENT_KIND_RUNNER_STARTED) == 2;
  })) << Log(agent);
  EXPECT_EQ(node("a").factory.granted_milli_cpu("fake:vm1"), Cus(3).milli_cpu);
}

TEST_F(AgentTest, ALostVmIsRetriedAndReportedWithoutDisturbingTheOthers) {
  RegisterNode("a", 8);
  FakeVm& vm1 = AddVm("vm1", "a", {1, 4});
  FakeVm& vm2 = AddVm("vm2", "a", {1, 4});
  Agent& agent = StartAgent("a", Config("a", {VmConfig("vm1", {1, 4}), VmConfig("vm2", {1, 4})}));
  ASSERT_TRUE(Eventually([&] { return Managed(agent, "vm1") && Managed(agent, "vm2"); }))
      << Log(agent);

  vm1.Kill();  // its QEMU is gone for good
  ASSERT_TRUE(Eventually([&] { return Has(agent, "vm1", api::v1::EVENT_KIND_RUNNER_RESTARTING); }))
      << Log(agent);
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(Eventually([&] {
    return Has(agent, "vm1", api::v1::EVENT_KIND_RUNNER_START_FAILED);
  })) << Log(agent);
  const api::v1::AgentStatus status = agent.Status();
  const api::v1::VmStatus* lost = Vm(status, "vm1");
  ASSERT_NE(lost, nullptr) << "a lost VM stays on the status page";
  EXPECT_TRUE(absl::StrContains(lost->error(), "no fake VM there")) << lost->error();

  // Retried every restart_min, reported once while the error stays the same.
  const int opens = node("a").factory.opens();
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Eventually([&] { return node("a").factory.opens() > opens; }));
  EXPECT_EQ(Count(agent, "vm1", api::v1::EVENT_KIND_RUNNER_START_FAILED), 1) << Log(agent);
  // Its permit stays booked: the agent cannot know the VM will not come back.
  EXPECT_EQ(Permit("vm1"), Cus(1));

  // vm2 scales on.
  ASSERT_TRUE(
      agent.UpdateConfig(Config("a", {VmConfig("vm1", {1, 4}), VmConfig("vm2", {3, 4})})).ok());
  EXPECT_TRUE(Eventually([&] { return vm2.size() == Cus(3); })) << Log(agent);
  EXPECT_EQ(Permit("vm2"), Cus(3));
}

// Node a (4 CU, watermark 2 CU) holds vm1 and vm2 at 1 CU each; vm1's minimum rises to 2 CU, so
// a goes above its watermark and the scheduler orders vm1 (the only migratable VM) to node b.
class MigrationTest : public AgentTest {
 protected:
  // `script`: how the fake QEMUs migrate; vm1 starts in `run_state`.
  void StartBoth(const testing::MigrationScript& script = {},
                 const std::string& run_state = "running") {
    hv_.SetMigrationScript(script);
    RegisterNode("a", 4, /*watermark=*/0.5);
    RegisterNode("b", 4);
    vm1_ = &AddVm("vm1", "a", {1, 3}, /*migratable=*/true, run_state);
    AddVm("vm2", "a", {1, 1});
    a_ = &StartAgent("a", ConfigA(1));
    b_ = &StartAgent("b", ConfigB());
    ASSERT_TRUE(Eventually([&] { return Managed(*a_, "vm1") && Managed(*a_, "vm2"); })) << Log(*a_);
  }
  api::v1::AgentConfig ConfigA(int vm1_min) {
    api::v1::VmConfig vm1 = VmConfig("vm1", {static_cast<uint32_t>(vm1_min), 3});
    vm1.set_host_cgroup("/neonvm/vm1.source");
    vm1.set_agent_token_file(vm1_token_file_);
    if (allow_postcopy_) vm1.set_allow_postcopy(*allow_postcopy_);
    return Config("a", {vm1, VmConfig("vm2", {1, 1})});
  }
  // Node b may receive vm1: its own description of it, without a QMP address.
  api::v1::AgentConfig ConfigB() {
    api::v1::AgentConfig c = Config("b", {});
    api::v1::VmConfig vm1 = VmConfig("vm1", {1, 3});
    vm1.clear_qmp();
    vm1.mutable_spec()->set_kernel("/b/vmlinuz");
    *c.add_incoming_vms() = vm1;
    return c;
  }

  // Raises vm1's minimum to 2 CU and lets the agent poll for orders once it has grown.
  void Overfill() {
    ASSERT_TRUE(a_->UpdateConfig(ConfigA(2)).ok());
    // A request made before the scheduler took the new minimum is refused and retried after
    // its back-off (clock time).
    ASSERT_TRUE(Eventually([&] {
      clock_.Advance(absl::Milliseconds(50));
      return Permit("vm1") == Cus(2);
    })) << Log(*a_);
    clock_.Advance(absl::Seconds(1));  // the next poll for migration orders
  }

  // The migration has ended, as the scheduler saw it.
  bool Settled() {
    absl::StatusOr<api::v1::VmState> v = Ledger("vm1");
    return v.ok() && !v->migrating();
  }

  // The ledger is consistent: its invariants hold, vm1 is booked once, not migrating, on the
  // node `node`.
  void ExpectLedger(const std::string& node) {
    EXPECT_TRUE(scheduler_->ledger().CheckInvariants().ok())
        << scheduler_->ledger().CheckInvariants();
    absl::StatusOr<api::v1::VmState> vm1 = Ledger("vm1");
    ASSERT_TRUE(vm1.ok()) << vm1.status();
    EXPECT_FALSE(vm1->migrating());
    EXPECT_EQ(vm1->node(), node);
  }

  // vm1 runs on `node` (its one running copy), and ran only once at any time.
  void ExpectOneCopyOn(const std::string& node) {
    EXPECT_EQ(hv_.RunningCopies("vm1"), 1);
    EXPECT_EQ(hv_.MaxRunningCopies("vm1"), 1) << "two copies ran at once";
    FakeVm* running = hv_.Running("vm1");
    ASSERT_NE(running, nullptr);
    // The source is "fake:vm1"; a target on b is "fake:b/vm1/<n>".
    EXPECT_TRUE(node == "a" ? running->qmp_address() == "fake:vm1"
                            : absl::StartsWith(running->qmp_address(), "fake:b/"))
        << running->qmp_address();
  }

  void ExpectMigratedToB() {
    ASSERT_TRUE(Eventually([&] { return Has(*a_, "vm1", api::v1::EVENT_KIND_MIGRATED_OUT); }))
        << "a:" << Log(*a_) << "\nb:" << Log(*b_);
    ASSERT_TRUE(Eventually([&] { return Managed(*b_, "vm1"); })) << Log(*b_);
    ASSERT_TRUE(Eventually([&] { return Settled(); }));
    ExpectOneCopyOn("b");
    ExpectLedger("b");
    EXPECT_EQ(Vm(a_->Status(), "vm1"), nullptr);
  }

  void ExpectStayedOnA() {
    ASSERT_TRUE(Eventually([&] { return Has(*a_, "vm1", api::v1::EVENT_KIND_MIGRATION_FAILED); }))
        << "a:" << Log(*a_) << "\nb:" << Log(*b_);
    ASSERT_TRUE(Eventually([&] { return Settled(); }));
    ExpectLedger("a");
    EXPECT_FALSE(Has(*b_, "vm1", api::v1::EVENT_KIND_MIGRATED_IN));
    // a manages it again: resizing resumes.
    ASSERT_TRUE(Eventually([&] {
      for (const RunnerStatus& s : a_->Statuses()) {
        if (s.vm == "vm1") return !s.migrating && s.current.memory_bytes > 0;
      }
      return false;
    })) << Log(*a_);
  }

  FakeVm* vm1_ = nullptr;
  Agent* a_ = nullptr;
  Agent* b_ = nullptr;
  std::optional<bool> allow_postcopy_;
  std::string vm1_token_file_;
};

TEST_F(MigrationTest, AVmMigratesOutAndIn) {
  StartBoth({.kvm = true});
  Overfill();
  ExpectMigratedToB();
  FakeVm* running = hv_.Running("vm1");
  EXPECT_EQ(running->size(), Cus(2)) << "the VM arrives at the size it had";
  EXPECT_EQ(vm1_->run_state(), "shutdown") << "the source quit";
  EXPECT_EQ(vm1_->postcopy_switches(), 0) << "KVM: precopy, as configured";
  EXPECT_EQ(Permit("vm1"), Cus(2));
  // a drove the quota of the source's group; b drives the target's own.
  EXPECT_EQ(node("a").factory.host_cgroup("fake:vm1"), "/neonvm/vm1.source");
  EXPECT_EQ(node("b").factory.host_cgroup(running->qmp_address()),
            testing::FakeHostCgroup(running->qmp_address()));
  const api::v1::AgentStatus b_status = b_->Status();
  EXPECT_EQ(Vm(b_status, "vm1")->host_cgroup(), testing::FakeHostCgroup(running->qmp_address()));
  // b's agent reaches the VM's monitor (it moved with the VM) and scales it: a load of 2.5
  // wants 3 CU, its maximum. (b's first requests came before the scheduler moved the VM, and
  // are retried after 3 s.)
  ASSERT_TRUE(Eventually([&] {
    const api::v1::AgentStatus s = b_->Status();
    const api::v1::VmStatus* v = Vm(s, "vm1");
    return v != nullptr && v->monitor_connected();
  })) << Log(*b_);
  EXPECT_EQ(monitors_.at(testing::FakeMonitorAddress("vm1"))->connections(), 2);
  ASSERT_TRUE(SendMetrics("vm1", Load(2.5)));
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(Eventually([&] { return running->size() == Cus(3); })) << Log(*b_);
  EXPECT_EQ(Permit("vm1"), Cus(3));
  EXPECT_EQ(Ledger("vm1")->node(), "b");
  // The source's migration thread ends after it reported; it may still be finishing.
  EXPECT_TRUE(Eventually([&] { return a_->migration_threads() == 0; }))
      << a_->migration_threads() << " threads of ended migrations are left";
}

TEST_F(MigrationTest, UnderTcgAMigrationSwitchesToPostcopy) {
  StartBoth({.kvm = false});
  Overfill();
  ExpectMigratedToB();
  EXPECT_EQ(vm1_->postcopy_switches(), 1);
}

TEST_F(MigrationTest, UnderTcgAVmThatForbidsPostcopyIsNotMigrated) {
  allow_postcopy_ = false;
  StartBoth({.kvm = false});
  Overfill();
  ExpectStayedOnA();
  ExpectOneCopyOn("a");
  EXPECT_EQ(vm1_->migration_status(), "none") << "nothing was sent";
  EXPECT_FALSE(Has(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_PREPARED));
}

TEST_F(MigrationTest, AFailedMigrationLeavesTheVmWhereItWas) {
  StartBoth({.fail_at_poll = 2, .kvm = true});
  Overfill();
  ExpectStayedOnA();
  ExpectOneCopyOn("a");
  EXPECT_EQ(vm1_->run_state(), "running");
  ASSERT_TRUE(Eventually([&] { return Has(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_ABANDONED); }));
}

// The target dies before the switch (precopy): the source runs on.
TEST_F(MigrationTest, TargetKilledBeforeTheSwitchLeavesTheSourceRunning) {
  StartBoth({.active_polls = 5, .kill_target_at_poll = 2, .kvm = true});
  Overfill();
  ExpectStayedOnA();
  ExpectOneCopyOn("a");
}

// The target dies after the switch to postcopy: it held the only live copy. The VM is lost; the
// source is not resumed (that would run a stale copy), and the agent stops managing it.
TEST_F(MigrationTest, TargetKilledAfterTheSwitchToPostcopyLosesTheVmAndSaysSo) {
  allow_postcopy_ = true;
  StartBoth({.active_polls = 10, .postcopy_polls = 5, .kill_target_at_poll = 7, .kvm = false});
  Overfill();
  ASSERT_TRUE(Eventually([&] { return Has(*a_, "vm1", api::v1::EVENT_KIND_VM_LOST); })) << Log(*a_);
  ASSERT_TRUE(Eventually([&] { return Settled(); }));
  EXPECT_EQ(hv_.RunningCopies("vm1"), 0);
  EXPECT_EQ(hv_.MaxRunningCopies("vm1"), 1);
  EXPECT_EQ(vm1_->run_state(), "finish-migrate") << "the source stays paused";
  // The result is reported before the agent lets the VM go: wait for that too.
  EXPECT_TRUE(Eventually([&] { return !Managed(*a_, "vm1"); })) << Log(*a_);
  const api::v1::AgentStatus status = a_->Status();
  ASSERT_NE(Vm(status, "vm1"), nullptr);
  EXPECT_TRUE(absl::StrContains(Vm(status, "vm1")->error(), "lost")) << Vm(status, "vm1")->error();
  // The ledger keeps booking it where it was (nothing is released that may still be in use).
  ExpectLedger("a");
}

// After the switch to postcopy, query-migrate answers time out for a while: the target holds the
// VM, so the migration is followed on, not cancelled.
TEST_F(MigrationTest, QueryTimeoutsAfterTheSwitchToPostcopyAreRidOut) {
  allow_postcopy_ = true;
  StartBoth({.active_polls = 10, .query_timeouts_in_postcopy = 3, .kvm = false});
  Overfill();
  ExpectMigratedToB();
  EXPECT_EQ(vm1_->postcopy_switches(), 1);
  EXPECT_EQ(vm1_->cancels(), 0);
}

// The migration's time runs out after the switch to postcopy: it is not cancelled.
TEST_F(MigrationTest, TheTimeoutDoesNotCancelAPostcopyMigration) {
  allow_postcopy_ = true;
  migration_timeout_ = absl::Milliseconds(200);
  StartBoth({.active_polls = 10, .postcopy_polls = 100, .kvm = false});
  Overfill();
  ExpectMigratedToB();
  EXPECT_EQ(vm1_->postcopy_switches(), 1);
  EXPECT_EQ(vm1_->cancels(), 0);
}

// query-migrate answers time out just as the migration completes: the completion is found, not
// taken for a failure (which resumed the paused source while the target ran it).
TEST_F(MigrationTest, QueryTimeoutsAtCompletionDoNotResumeTheSource) {
  StartBoth({.query_timeouts_at_completion = 3, .kvm = true});
  Overfill();
  ExpectMigratedToB();
}

// The timeout's cancel reaches QEMU as the migration completes, and loses the race.
TEST_F(MigrationTest, ACancelThatLosesTheRaceWithCompletionLeavesTheTargetRunningIt) {
  migration_timeout_ = absl::ZeroDuration();
  StartBoth({.cancel_loses_race = true, .kvm = true});
  Overfill();
  ExpectMigratedToB();
  EXPECT_EQ(vm1_->cancels(), 1);
}

// FinishIncoming fails (the connection to the target agent drops) a few times: it is asked again
// until the target answers, which takes the VM over.
TEST_F(MigrationTest, AFinishIncomingThatFailsIsAskedAgain) {
  StartBoth({.kvm = true});
  finish_failures_ = 3;
  Overfill();
  ExpectMigratedToB();
  EXPECT_EQ(finish_failures_, 0);
}

// The target's copy dies right after a precopy completes: the target agent says it does not run
// the VM, so the paused source, which holds all of it, resumes (it is not quit).
TEST_F(MigrationTest, ATargetThatCannotTakeOverLetsTheSourceResume) {
  StartBoth({.kill_target_at_completion = true, .kvm = true});
  Overfill();
  ExpectStayedOnA();
  ExpectOneCopyOn("a");
  EXPECT_EQ(vm1_->run_state(), "running");
}

// A VM paused before its migration is not resumed when the migration fails.
TEST_F(MigrationTest, AFailedMigrationDoesNotResumeAVmThatWasPaused) {
  StartBoth({.fail_at_poll = 2, .kvm = true}, /*run_state=*/"paused");
  Overfill();
  ExpectStayedOnA();
  EXPECT_EQ(vm1_->run_state(), "paused");
  EXPECT_EQ(hv_.RunningCopies("vm1"), 1);
  EXPECT_EQ(hv_.MaxRunningCopies("vm1"), 1);
}

// The source's agent stops in the middle of a migration (its QEMU goes on); the agent that
// replaces it takes the migration up where QEMU has it, instead of starting another.
TEST_F(MigrationTest, ARestartedSourceAgentTakesTheMigrationUp) {
  StartBoth({.active_polls = 1000000, .kvm = true});
  Overfill();
  ASSERT_TRUE(Eventually([&] { return vm1_->migration_status() == "active"; }));
  a_ = &StartAgent("a", ConfigA(2));  // the old agent stops: its migration is interrupted
  hv_.SetMigrationScript({.active_polls = 3, .kvm = true});
  ExpectMigratedToB();
  EXPECT_EQ(Count(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_PREPARED), 1) << "one target only";
}

// The attacks on a target agent (issue 14): an incoming migration the scheduler did not order to
// this node starts no QEMU; neither does one of a VM this node is not configured for, or one
// whose sizes its config does not allow; an order already prepared is not prepared again.
TEST_F(MigrationTest, AnIncomingMigrationWithoutItsOrderStartsNoQemu) {
  StartBoth({.active_polls = 1000000, .kvm = true});
  api::v1::PrepareIncomingRequest forged;
  forged.set_order_id(77);
  *forged.mutable_vm() = VmConfig("vm1", {1, 3});
  forged.mutable_vm()->mutable_spec()->set_kernel("/attacker/bzImage");
  *forged.mutable_current() = core::ToProto(Cus(1));
  absl::StatusOr<api::v1::PrepareIncomingResponse> r = b_->PrepareIncoming(forged);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "no such order")) << r.status();
  // A VM node b is not configured for.
  forged.mutable_vm()->set_name("vm9");
  r = b_->PrepareIncoming(forged);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "not in its incomingVms")) << r.status();
  EXPECT_TRUE(node("b").factory.incoming_requests().empty()) << "a QEMU was started";
  EXPECT_TRUE(Has(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_REFUSED)) << Log(*b_);

  // Once the scheduler ordered vm1 to b, the order's real target is prepared (by a); the same
  // order again, or with sizes beyond vm1's bounds, is not.
  Overfill();
  ASSERT_TRUE(Eventually([&] { return vm1_->migration_status() == "active"; })) << Log(*a_);
  ASSERT_EQ(node("b").factory.incoming_requests().size(), 1u);
  absl::StatusOr<api::v1::VmState> state = Ledger("vm1");
  ASSERT_TRUE(state.ok() && state->has_migration()) << state.status();
  forged.set_order_id(state->migration().id());
  forged.mutable_vm()->set_name("vm1");
  r = b_->ForCaller(Identity("a"))->PrepareIncoming(forged);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();
  // Another node (c) may neither prepare this order nor finish or abandon it; nor may a
  // certificate without a node identity, or node a of another trust domain.
  for (const std::string& who : {Identity("c"), std::string("spiffe://autoscale.test/admin"),
                                 std::string("spiffe://other.test/node/a")}) {
    r = b_->ForCaller(who)->PrepareIncoming(forged);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << who << ": " << r.status();
    api::v1::FinishIncomingRequest finish;
    finish.set_order_id(forged.order_id());
    finish.set_vm("vm1");
    absl::Status abandoned = b_->ForCaller(who)->FinishIncoming(finish);
    EXPECT_EQ(abandoned.code(), absl::StatusCode::kPermissionDenied) << who << ": " << abandoned;
  }
  // A caller without a node identity is refused before the scheduler is asked (asking spends
  // this agent's own budget there): for an order that does not exist, that is what it hears.
  api::v1::PrepareIncomingRequest unknown = forged;
  unknown.set_order_id(forged.order_id() + 1000);
  r = b_->ForCaller("spiffe://autoscale.test/admin")->PrepareIncoming(unknown);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "without a node identity")) << r.status();
  EXPECT_EQ(node("b").factory.incoming_requests().size(), 1u);
  EXPECT_EQ(Count(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_ABANDONED), 0) << Log(*b_);
}

// The source's PrepareIncoming call times out and it abandons the order while the target's QEMU
// is still starting: the target stops that QEMU once it is up, rather than keep it running with
// no reservation behind it.
TEST_F(MigrationTest, AnOrderAbandonedWhileItsTargetStartsLeavesNoQemu) {
  StartBoth({.active_polls = 1000000, .kvm = true});
  std::atomic<bool> first{true};
  absl::Mutex mu;
  std::optional<absl::Status> abandoned;
  node("b").factory.OnStartIncoming([&](const api::v1::PrepareIncomingRequest& r) {
    if (!first.exchange(false)) return;
    api::v1::FinishIncomingRequest abandon;
    abandon.set_order_id(r.order_id());
    abandon.set_vm(r.vm().name());
    abandon.set_error("PrepareIncoming timed out (injected)");
    absl::Status s = b_->ForCaller(Identity("a"))->FinishIncoming(abandon);
    absl::MutexLock lock(&mu);
    abandoned = s;
  });
  Overfill();
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return abandoned.has_value();
  })) << Log(*a_);
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(abandoned->ok()) << *abandoned;
  }
  // The first target QEMU b started is gone, and vm1 never ran twice.
  ASSERT_TRUE(Eventually([&] {
    FakeVm* target = hv_.Find("fake:b/vm1/1");  // the first incoming VM
    return target != nullptr && target->run_state() == "shutdown";
  })) << Log(*b_);
  EXPECT_LE(hv_.MaxRunningCopies("vm1"), 1);
}

// The source's agent dies between PrepareIncoming and FinishIncoming and does not come back; the
// scheduler ends the order when it expires. The target's QEMU, still waiting for the VM's state,
// goes then, rather than run until its agent stops; the source QEMU still has the VM.
TEST_F(MigrationTest, ATargetWhoseOrderExpiredIsStopped) {
  StartBoth({.active_polls = 1000000, .kvm = true});
  Overfill();
  ASSERT_TRUE(Eventually([&] { return vm1_->migration_status() == "active"; })) << Log(*a_);
  a_->Stop();  // interrupted: nothing decided, and nobody finishes b's target
  FakeVm* target = hv_.Find("fake:b/vm1/1");
  ASSERT_NE(target, nullptr);
  clock_.Advance(absl::Seconds(1));  // b's next polls
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(target->run_state(), "inmigrate") << "the order is still live: the target waits";

  clock_.Advance(scheduler::MaintenanceOptions().migration_timeout);
  scheduler_->Tick();  // expires the order (and, a still above its watermark, orders vm1 again)
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(absl::Seconds(1));
    return target->run_state() == "shutdown";
  })) << Log(*b_);
  EXPECT_TRUE(Has(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_ABANDONED)) << Log(*b_);
  EXPECT_EQ(hv_.RunningCopies("vm1"), 1);
  EXPECT_EQ(Ledger("vm1")->node(), "a");
  EXPECT_TRUE(scheduler_->ledger().CheckInvariants().ok());
}

TEST_F(MigrationTest, SizesBeyondTheVmsBoundsAreRefused) {
  StartBoth({.active_polls = 1000000, .kvm = true});
  // b's description of vm1 allows at most 1 CU: the 2 CU vm1 has when it is ordered away is
  // more than b takes.
  api::v1::AgentConfig b = ConfigB();
  b.mutable_incoming_vms(0)->mutable_bounds()->set_max_cu(1);
  ASSERT_TRUE(b_->UpdateConfig(b).ok());
  Overfill();
  ASSERT_TRUE(Eventually([&] { return Has(*a_, "vm1", api::v1::EVENT_KIND_MIGRATION_FAILED); }))
      << Log(*a_);
  EXPECT_TRUE(Has(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_REFUSED)) << Log(*b_);
  EXPECT_TRUE(node("b").factory.incoming_requests().empty());
  EXPECT_EQ(hv_.RunningCopies("vm1"), 1);
}

// An agent token is a token, not a payload: one far longer than any is refused, and starts
// nothing.
TEST_F(MigrationTest, AnOversizedAgentTokenIsRefused) {
  tamper_ = [](api::v1::PrepareIncomingRequest& r) { r.set_agent_token(std::string(5000, 'x')); };
  StartBoth({.kvm = true});
  Overfill();
  ASSERT_TRUE(Eventually([&] { return Has(*a_, "vm1", api::v1::EVENT_KIND_MIGRATION_FAILED); }))
      << Log(*a_);
  EXPECT_TRUE(Has(*b_, "vm1", api::v1::EVENT_KIND_INCOMING_REFUSED)) << Log(*b_);
  EXPECT_TRUE(absl::StrContains(Log(*b_), "agent token of 5000 bytes")) << Log(*b_);
  EXPECT_TRUE(node("b").factory.incoming_requests().empty());
}

// A source sends a spec with paths and arguments of its choosing; the target starts the VM from
// its own description of it, with only the source's sizes.
TEST_F(MigrationTest, TheTargetStartsTheVmFromItsOwnConfigNotTheSources) {
  tamper_ = [](api::v1::PrepareIncomingRequest& r) {
    api::v1::VmLaunchSpec& spec = *r.mutable_vm()->mutable_spec();
    spec.set_kernel("/attacker/vmlinuz");
    spec.add_kernel_args("init=/bin/sh");
    spec.add_disks()->set_path("/etc/shadow");
    spec.set_cpu_model("host,+evil");
    r.mutable_vm()->set_qmp("unix:/attacker.sock");
    r.mutable_vm()->set_host_cgroup("/");
    r.mutable_vm()->mutable_bounds()->set_max_cu(1000);
  };
  StartBoth({.kvm = true});
  Overfill();
  ExpectMigratedToB();
  const std::vector<api::v1::PrepareIncomingRequest> started =
      node("b").factory.incoming_requests();
  ASSERT_EQ(started.size(), 1u);
  const api::v1::VmLaunchSpec& spec = started[0].vm().spec();
  EXPECT_EQ(spec.kernel(), "/b/vmlinuz");
  EXPECT_TRUE(spec.kernel_args().empty());
  EXPECT_TRUE(spec.disks().empty());
  EXPECT_EQ(spec.cpu_model(), "");
  EXPECT_EQ(started[0].vm().qmp(), "") << "the target starts its own QEMU";
  EXPECT_EQ(started[0].vm().host_cgroup(), "");
  EXPECT_EQ(started[0].vm().bounds().max_cu(), 3u);
  EXPECT_EQ(started[0].current().memory_bytes(), Cus(2).memory_bytes) << "the source's size";
  // And b manages it within its own bounds for it.
  const api::v1::AgentStatus status = b_->Status();
  ASSERT_NE(Vm(status, "vm1"), nullptr);
}

// The VM's agent token moves with it: the source sends the token itself (not its file's path),
// the target hands it to its QEMU (as the source's had it) and presents it to the monitor, which
// admits only the token's holder.
TEST_F(MigrationTest, TheAgentTokenMovesWithTheVm) {
  testing::TempDir dir("token");
  const std::string token = rpc::monitor::NewAgentToken();
  vm1_token_file_ = dir.path() + "/vm1";
  std::ofstream(vm1_token_file_) << token;
  StartBoth({.kvm = true});
  ScriptedMonitor& monitor = *monitors_.at(testing::FakeMonitorAddress("vm1"));
  monitor.RequireToken(token);
  Overfill();
  ExpectMigratedToB();
  const std::vector<api::v1::PrepareIncomingRequest> started =
      node("b").factory.incoming_requests();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].agent_token(), token);
  EXPECT_EQ(started[0].vm().agent_token_file(), "") << "a path from the source";
  ASSERT_TRUE(Eventually([&] {
    const api::v1::AgentStatus s = b_->Status();
    const api::v1::VmStatus* v = Vm(s, "vm1");
    return v != nullptr && v->monitor_connected();
  })) << Log(*b_);
  EXPECT_EQ(monitor.connections(), 2);
  for (const std::string& t : monitor.tokens()) EXPECT_EQ(t, token);

  // A config reload that lists vm1 (with the source's token path, or none) keeps the token of
  // the QEMU b started: its runner, restarted after that, still holds it.
  api::v1::AgentConfig reload = ConfigB();
  api::v1::VmConfig listed = reload.incoming_vms(0);
  listed.set_qmp("fake:elsewhere");  // as the orchestrator wrote it; b keeps its own
  listed.set_agent_token_file("/elsewhere/vm1-token");
  *reload.add_vms() = listed;
  ASSERT_TRUE(b_->UpdateConfig(reload).ok()) << Log(*b_);
  FakeVm* moved = hv_.Running("vm1");
  ASSERT_NE(moved, nullptr);
  moved->SetReachable(false);
  ASSERT_TRUE(Eventually([&] { return Has(*b_, "vm1", api::v1::EVENT_KIND_RUNNER_RESTARTING); }))
      << Log(*b_);
  moved->SetReachable(true);
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(absl::Seconds(1));
    return monitor.connections() == 3;
  })) << Log(*b_);
  for (const std::string& t : monitor.tokens()) EXPECT_EQ(t, token);
}

// Each migration's thread is joined when it ends, not when the agent stops.
TEST_F(MigrationTest, MigrationThreadsAreJoinedWhenTheirMigrationEnds) {
  StartBoth({.fail_at_poll = 2, .kvm = true});
  Overfill();
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(Eventually([&] {
      return Count(*a_, "vm1", api::v1::EVENT_KIND_MIGRATION_FAILED) == i;
    })) << Log(*a_);
    ASSERT_TRUE(Eventually([&] { return Settled(); }));
    clock_.Advance(absl::Seconds(1));  // the next order
  }
  EXPECT_TRUE(Eventually([&] { return a_->migration_threads() == 0; }))
      << a_->migration_threads() << " threads of ended migrations are left";
}

}  // namespace
}  // namespace autoscale::agent
