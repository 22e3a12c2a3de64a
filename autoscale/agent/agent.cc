#include "autoscale/agent/agent.h"

#include <random>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/rpc/identity.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "glog/logging.h"
#include "neonvm/migration/migration.h"

namespace autoscale::agent {
namespace {

using core::Resources;

// The longest VM name an incoming migration may give (the ledger's longest name).
constexpr size_t kMaxVmNameBytes = 253;

}  // namespace

Agent::Agent(AgentOptions options, rpc::scheduler::SchedulerService& scheduler,
             VmDriverFactory& vms, MonitorConnector connect_monitor, PeerConnector connect_peer,
             Clock& clock)
    : options_(std::move(options)),
      scheduler_(scheduler),
      vms_factory_(vms),
      connect_monitor_(std::move(connect_monitor)),
      connect_peer_(std::move(connect_peer)),
      clock_(clock) {
  metrics_.Describe("autoscaling_agent_vm_target_cu", Metrics::kGauge,
                    "The size the VM should have (the goal within bounds), in compute units.");
  metrics_.Describe("autoscaling_vm_desired_cu", Metrics::kGauge,
                    "The goal by component (total, cpu, mem, lfc) before bounds, in compute "
                    "units, as the reference's agent reports it.");
  metrics_.Describe("autoscaling_agent_vm_cpu_milli", Metrics::kGauge,
                    "The VM's milli-CPU: current, and its permit.");
  metrics_.Describe("autoscaling_agent_vm_memory_bytes", Metrics::kGauge,
                    "The VM's memory in bytes: current, and its permit.");
  metrics_.Describe("autoscaling_agent_scheduler_requests_total", Metrics::kCounter,
                    "Scheduler requests by result.");
  metrics_.Describe("autoscaling_agent_scaling_partial_approvals_total", Metrics::kCounter,
                    "Requests the scheduler granted in part.");
  metrics_.Describe("autoscaling_agent_scaling_full_denials_total", Metrics::kCounter,
                    "Requests the scheduler granted nothing of.");
  metrics_.Describe("autoscaling_agent_vm_resizes_total", Metrics::kCounter,
                    "VM resizes by result.");
  metrics_.Describe("autoscaling_agent_scheduler_latency_seconds", Metrics::kHistogram,
                    "Scheduler request latency.");
  metrics_.Describe("autoscaling_agent_vm_resize_latency_seconds", Metrics::kHistogram,
                    "VM resize latency.");
  metrics_.Describe("autoscaling_agent_runner_restarts_total", Metrics::kCounter,
                    "Runners restarted after a failure.");
  metrics_.Describe("autoscaling_agent_migrations_total", Metrics::kCounter,
                    "Live migrations by direction and result.");
  metrics_.Describe("autoscaling_agent_monitor_refused_total", Metrics::kCounter,
                    "Monitor connections refused: the monitor's certificate is not the VM's, or "
                    "the monitor refused this agent (its agent token).");
}

Agent::~Agent() { Stop(); }

absl::Status Agent::Start(const api::v1::AgentConfig& config) {
  RETURN_IF_ERROR(ValidateAgentConfig(config));
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("the agent was started already");
    started_ = true;
    RETURN_IF_ERROR(ApplyConfig(config));
  }
  (void)RegisterNode();  // if not taken now, the supervisor retries
  // The runners start in the supervisor's first round.
  supervisor_ = std::thread([this] { SupervisorLoop(); });
  return absl::OkStatus();
}

absl::Status Agent::UpdateConfig(const api::v1::AgentConfig& config) {
  absl::Status s = ValidateAgentConfig(config);
  absl::MutexLock lock(&mu_);
  if (s.ok() && (!started_ || stopping_)) {
    s = absl::FailedPreconditionError("the agent is not running");
  }
  if (s.ok()) s = ApplyConfig(config);
  if (!s.ok()) {
    Event("", api::v1::EVENT_KIND_CONFIG_REJECTED,
          absl::StrCat("config not applied: ", s.message()));
    return s;
  }
  Event("", api::v1::EVENT_KIND_CONFIG_APPLIED,
        absl::StrCat("config applied: ", config.vms_size(), " VMs"));
  return absl::OkStatus();
}

bool Agent::RegisterNode() {
  api::v1::RegisterNodeRequest r;
  {
    absl::MutexLock lock(&mu_);
    r.set_node(config_.node());
    *r.mutable_total() = config_.node_total();
    r.set_watermark(config_.watermark());
  }
  r.set_agent_address(options_.address);
  absl::StatusOr<api::v1::RegisterNodeResponse> registered = scheduler_.RegisterNode(r);
  if (registered.ok()) {
    absl::MutexLock lock(&mu_);
    registered_.emplace(r.total(), r.watermark());
  } else {
    // The runners' requests fail until the node is known; the supervisor retries.
    Event("", api::v1::EVENT_KIND_NODE_REGISTRATION_FAILED,
          absl::StrCat("registering node ", r.node(),
                       " with the scheduler: ", registered.status().message()));
    return false;
  }
  // The scheduler may hold less than asked: the operator shrank the node.
  const api::v1::Resources& held = registered->has_node() ? registered->node().total() : r.total();
  Event("", api::v1::EVENT_KIND_NODE_REGISTERED,
        absl::StrCat("node ", r.node(), " registered with the scheduler (", held.milli_cpu(), "m, ",
                     held.memory_bytes() >> 20, " MiB",
                     held.milli_cpu() < r.total().milli_cpu() ||
                             held.memory_bytes() < r.total().memory_bytes()
                         ? absl::StrCat("; this config says ", r.total().milli_cpu(), "m, ",
                                        r.total().memory_bytes() >> 20,
                                        " MiB, but only the admin may raise it")
                         : "",
                     ")"));
  return true;
}

bool Agent::NodeRegistered() const {
  return registered_ && registered_->second == config_.watermark() &&
         registered_->first.milli_cpu() == config_.node_total().milli_cpu() &&
         registered_->first.memory_bytes() == config_.node_total().memory_bytes();
}

void Agent::SupervisorLoop() {
  absl::Time next_orders = absl::InfinitePast();
  absl::Time next_registration = absl::InfinitePast();
  while (true) {
    const absl::Time now = clock_.Now();
    bool registered;
    {
      absl::MutexLock lock(&mu_);
      registered = NodeRegistered();
    }
    // Not registered yet, or the config's total or watermark changed since: (again) as the
    // config has it. Only a refusal waits for the back-off.
    if (!registered && now >= next_registration && !RegisterNode()) {
      next_registration = now + options_.restart_min;
    }
    Supervise();
    if (now >= next_orders) {
      next_orders = now + options_.migration_poll_interval;
      api::v1::MigrationOrdersRequest request;
      {
        absl::MutexLock lock(&mu_);
        request.set_node(config_.node());
      }
      absl::StatusOr<api::v1::MigrationOrdersResponse> orders =
          scheduler_.GetMigrationOrders(request);
      if (orders.ok()) {
        for (const api::v1::MigrationOrder& order : orders->orders()) OnMigrationOrder(order);
      }
      SweepIncoming();
    }
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop), options_.supervise_interval)) return;
  }
}

void Agent::Stop() {
  std::vector<std::thread> migrations;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !supervisor_.joinable()) return;
    stopping_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, thread] : migrations_) migrations.push_back(std::move(thread));
    migrations_.clear();
    for (std::thread& thread : ended_) migrations.push_back(std::move(thread));
    ended_.clear();
  }
  for (std::thread& t : migrations) t.join();  // they see stopping_ and end
  std::map<std::string, Managed> vms;
  std::map<uint64_t, Incoming> incoming;
  {
    absl::MutexLock lock(&mu_);
    // An incoming VM another thread is finishing (a FinishIncoming call) is ended by it.
    auto none_finishing = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [id, in] : incoming_) {
        if (in.finishing) return false;
      }
      return true;
    };
    mu_.Await(absl::Condition(&none_finishing));
    vms = std::move(vms_);
    incoming = std::move(incoming_);
  }
  for (auto& [name, m] : vms) {
    if (m.runner) m.runner->Stop();
  }
}

absl::Status Agent::ApplyConfig(const api::v1::AgentConfig& config) {
  ASSIGN_OR_RETURN(Resources cu, core::ComputeUnitFromProto(config.compute_unit()));
  if (!config_.node().empty() && config.node() != config_.node()) {
    return absl::InvalidArgumentError(
        absl::StrCat("node cannot change (was ", config_.node(), ", now ", config.node(), ")"));
  }
  if (!vms_.empty() && cu != compute_unit_) {
    // The scheduler books each VM in whole units of the compute unit it was placed with, and
    // refuses requests in another: runners on a new one could never be granted anything.
    return absl::FailedPreconditionError(absl::StrCat(
        "computeUnit: cannot change from ", compute_unit_.ToString(), " to ", cu.ToString(),
        " while the agent manages VMs (the scheduler books each VM in the compute unit it was "
        "placed with)"));
  }
  compute_unit_ = cu;
  config_ = config;
  std::set<std::string> listed;
  for (const api::v1::VmConfig& vm : config.vms()) {
    if (departed_.contains(vm.name())) continue;
    listed.insert(vm.name());
    auto it = vms_.find(vm.name());
    if (it == vms_.end()) {
      vms_[vm.name()].config = vm;
      continue;
    }
    Managed& m = it->second;
    api::v1::VmConfig next = vm;
    if (m.owned) {
      // Came in by migration: this agent started its QEMU, so the addresses are its own; the
      // config still sets the bounds and scaling.
      next.set_qmp(m.config.qmp());
      next.set_monitor_address(m.config.monitor_address());
      next.set_host_cgroup(m.config.host_cgroup());
      next.set_agent_token_file(m.config.agent_token_file());
    }
    const bool same_place = m.config.qmp() == next.qmp() &&
                            m.config.monitor_address() == next.monitor_address() &&
                            m.config.host_cgroup() == next.host_cgroup();
    m.config = std::move(next);
    if (m.pending == Managed::Pending::kRemove) m.pending = Managed::Pending::kNone;  // back
    if (!m.runner) continue;
    if (!same_place) {
      m.pending = Managed::Pending::kRestart;  // the supervisor restarts it at the new addresses
      continue;
    }
    RETURN_IF_ERROR(UpdateRunner(m));
  }
  for (auto& [name, m] : vms_) {
    if (!m.owned && !listed.contains(name)) m.pending = Managed::Pending::kRemove;
  }
  return absl::OkStatus();
}

absl::Status Agent::UpdateRunner(Managed& m) {
  ASSIGN_OR_RETURN(core::Bounds bounds, core::BoundsFromProto(m.config.bounds()));
  ASSIGN_OR_RETURN(core::ScalingConfig scaling,
                   core::ResolveScalingConfig(config_.scaling(), m.config.scaling()));
  ASSIGN_OR_RETURN(core::Timings timings, core::ResolveTimings(config_.timings()));
  m.runner->Update(bounds, scaling, timings);
  return absl::OkStatus();
}

int64_t Agent::GrantedMilliCpu(const std::string& node, const std::string& vm) {
  api::v1::ListRequest list;
  list.set_node(node);
  absl::StatusOr<api::v1::ListVmsResponse> vms = scheduler_.ListVms(list);
  if (!vms.ok()) {
    // The driver then reads it from whole vCPUs (or compute units), as precisely as they tell.
    LOG(WARNING) << "VM " << vm << ": its permit is not known (" << vms.status() << ")";
    return 0;
  }
  for (const api::v1::VmState& v : vms->vms()) {
    if (v.vm() == vm) return v.permit().milli_cpu();
  }
  return 0;
}

absl::Status Agent::StartRunner(const api::v1::VmConfig& vm, std::unique_ptr<Runner>& runner,
                                std::unique_ptr<neonvm::migration::Source>& migration) {
  RunnerOptions o;
  Resources cu;
  {
    absl::MutexLock lock(&mu_);
    o.node = config_.node();
    cu = compute_unit_;
    ASSIGN_OR_RETURN(o.state.scaling, core::ResolveScalingConfig(config_.scaling(), vm.scaling()));
    ASSIGN_OR_RETURN(o.state.timings, core::ResolveTimings(config_.timings()));
  }
  o.vm = vm.name();
  o.state.compute_unit = cu;
  ASSIGN_OR_RETURN(o.bounds, core::BoundsFromProto(vm.bounds()));
  o.monitor_address = vm.monitor_address();
  // Read at every start: an agent that restarted finds the token of a VM it did not launch.
  if (!vm.agent_token_file().empty()) {
    absl::StatusOr<std::string> token = rpc::monitor::ReadAgentToken(vm.agent_token_file());
    if (!token.ok()) return Annotate(token.status(), absl::StrCat("VM ", vm.name()));
    o.agent_token = *std::move(token);
  }
  o.monitor_retry = options_.monitor_retry;
  o.monitor_health_interval = options_.monitor_health_interval;
  o.max_sleep = options_.runner_max_sleep;
  o.probe_interval = options_.runner_max_sleep;
  o.on_migration_order = [this](const api::v1::MigrationOrder& order) { OnMigrationOrder(order); };
  ASSIGN_OR_RETURN(OpenedVm opened, vms_factory_.Open(vm, cu, GrantedMilliCpu(o.node, vm.name()),
                                                      o.state.timings.vm_request_timeout));
  auto started = std::make_unique<Runner>(std::move(o), std::move(opened.driver), scheduler_,
                                          connect_monitor_, events_, metrics_, clock_);
  RETURN_IF_ERROR(started->Start());
  runner = std::move(started);
  migration = std::move(opened.migration);
  return absl::OkStatus();
}

void Agent::Supervise() {
  // Runners to stop (failed, removed, or moved): stopped outside the lock, because their threads
  // call back into the agent.
  std::vector<std::unique_ptr<Runner>> to_stop;
  std::vector<api::v1::VmConfig> to_start;
  std::vector<std::pair<std::string, core::Bounds>> bounds_to_send;
  std::vector<std::thread> ended;
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    ended.swap(ended_);
    static thread_local std::mt19937_64 rng(std::random_device{}());
    for (auto it = vms_.begin(); it != vms_.end();) {
      Managed& m = it->second;
      if (m.migrating || m.lost) {  // the migration decides (decided) what becomes of it
        ++it;
        continue;
      }
      if (m.pending == Managed::Pending::kRemove) {
        if (m.runner) to_stop.push_back(std::move(m.runner));
        metrics_.Forget({"vm", it->first});
        Event(it->first, api::v1::EVENT_KIND_VM_REMOVED,
              "no longer in the config: not managed any more");
        it = vms_.erase(it);
        continue;
      }
      // Sent once the runner holds a permit: its first request reports the VM's size as it is,
      // which a raised minimum would make the scheduler refuse, again and again.
      if (absl::StatusOr<core::Bounds> b = core::BoundsFromProto(m.config.bounds());
          b.ok() && m.bounds_sent != *b && now >= m.bounds_retry_at && m.runner &&
          m.runner->Status().permit) {
        bounds_to_send.emplace_back(it->first, *b);
        m.bounds_retry_at = absl::InfiniteFuture();  // claimed by this round
      }
      if (m.runner) {
        std::string failure = m.runner->failure();
        if (m.pending == Managed::Pending::kRestart)
          failure = "its addresses changed in the config";
        if (!failure.empty()) {
          const absl::Duration wait =
              options_.restart_min +
              absl::Milliseconds(std::uniform_int_distribution<int64_t>(
                  0, absl::ToInt64Milliseconds(options_.restart_max - options_.restart_min))(rng));
          Event(it->first, api::v1::EVENT_KIND_RUNNER_RESTARTING,
                absl::StrCat("runner stopped (", failure, "); restarting in ",
                             absl::FormatDuration(wait)));
          metrics_.Add("autoscaling_agent_runner_restarts_total", {{"vm", it->first}});
          to_stop.push_back(std::move(m.runner));
          m.migration.reset();
          m.restart_at = now + wait;
          m.last_error = failure;
          m.pending = Managed::Pending::kNone;
        }
      } else if (now >= m.restart_at) {
        to_start.push_back(m.config);
        m.restart_at = absl::InfiniteFuture();  // claimed by this round
      }
      ++it;
    }
  }
  for (std::thread& t : ended) t.join();  // their migrations have ended
  to_stop.clear();                        // Runner destructors stop and join
  SendBounds(bounds_to_send);
  for (const api::v1::VmConfig& vm : to_start) {
    std::unique_ptr<Runner> runner;
    std::unique_ptr<neonvm::migration::Source> migration;
    absl::Status started = StartRunner(vm, runner, migration);
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(vm.name());
    if (it == vms_.end() || stopping_) continue;  // removed meanwhile; the runner stops here
    Managed& m = it->second;
    if (started.ok()) {
      m.runner = std::move(runner);
      m.migration = std::move(migration);
      m.last_error.clear();
      // A config applied while it started (without a runner to update) applies now.
      (void)UpdateRunner(m);  // the config was checked when applied
      continue;
    }
    const std::string error(started.message());
    if (error != m.last_error) {
      Event(vm.name(), api::v1::EVENT_KIND_RUNNER_START_FAILED, "cannot start: " + error);
    }
    m.last_error = error;
    m.restart_at = now + options_.restart_min;
  }
}

void Agent::SendBounds(const std::vector<std::pair<std::string, core::Bounds>>& vms) {
  std::string node;
  {
    absl::MutexLock lock(&mu_);
    node = config_.node();
  }
  for (const auto& [name, bounds] : vms) {
    api::v1::UpdateVmBoundsRequest r;
    r.set_vm(name);
    r.set_node(node);
    r.mutable_bounds()->set_min_cu(bounds.min_cu);
    r.mutable_bounds()->set_max_cu(bounds.max_cu);
    const absl::Status sent = scheduler_.UpdateVmBounds(r).status();
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(name);
    if (it == vms_.end()) continue;
    Managed& m = it->second;
    if (sent.ok()) {
      if (m.bounds_sent) {  // a change (the first send only tells the scheduler what it had)
        Event(
            name, api::v1::EVENT_KIND_VM_CONFIG_CHANGED,
            absl::StrCat("the scheduler takes bounds ", bounds.min_cu, "..", bounds.max_cu, " CU"));
      }
      m.bounds_sent = bounds;
      m.bounds_error.clear();
      m.bounds_retry_at = absl::InfinitePast();
      continue;
    }
    // Requests outside the scheduler's bounds are refused meanwhile; the runner retries them.
    m.bounds_retry_at = clock_.Now() + options_.restart_min;
    const std::string error(sent.message());
    if (error != m.bounds_error) {
      Event(name, api::v1::EVENT_KIND_BOUNDS_REFUSED,
            absl::StrCat("the scheduler did not take bounds ", bounds.min_cu, "..", bounds.max_cu,
                         " CU (retried): ", error));
    }
    m.bounds_error = error;
  }
}

void Agent::SweepIncoming() {
  std::vector<uint64_t> waiting;
  api::v1::MigrationOrdersRequest ask;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, in] : incoming_) {
      if (!in.finishing) waiting.push_back(id);
    }
    ask.set_node(config_.node());
  }
  if (waiting.empty()) return;
  ask.set_as_target(true);
  absl::StatusOr<api::v1::MigrationOrdersResponse> orders = scheduler_.GetMigrationOrders(ask);
  if (!orders.ok()) return;  // asked again at the next poll
  std::set<uint64_t> live;
  for (const api::v1::MigrationOrder& o : orders->orders()) live.insert(o.id());
  for (const uint64_t id : waiting) {
    if (live.contains(id)) continue;
    IncomingVm* vm;
    {
      // Claimed as the source's FinishIncoming claims it: neither ends it under the other.
      absl::MutexLock lock(&mu_);
      auto it = incoming_.find(id);
      if (it == incoming_.end() || it->second.finishing) continue;
      it->second.finishing = true;
      vm = it->second.vm.get();
    }
    // A VM that has arrived here stays (its source may have handed it over and died before it
    // said so): only a copy still waiting for its state is surely not the VM.
    if (vm->AwaitArrival(/*expect_running=*/false, absl::ZeroDuration()).code() ==
        absl::StatusCode::kDeadlineExceeded) {
      DropIncoming(id, "the scheduler ended the order before its source finished it");
      continue;
    }
    absl::MutexLock lock(&mu_);
    incoming_.at(id).finishing = false;
  }
}

void Agent::OnMigrationOrder(const api::v1::MigrationOrder& order) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || migrating_.contains(order.id())) return;
  if (order.source_node() != config_.node()) return;
  auto it = vms_.find(order.vm());
  if (it == vms_.end() || !it->second.runner) return;  // not (yet) ours; polled again later
  migrating_.insert(order.id());
  it->second.migrating = true;
  migrations_.emplace(order.id(), std::thread([this, order] { Migrate(order); }));
}

size_t Agent::migration_threads() const {
  absl::MutexLock lock(&mu_);
  return migrations_.size() + ended_.size();
}

void Agent::Report(const api::v1::MigrationResult& result) {
  absl::Duration wait = absl::Milliseconds(100);
  while (true) {
    absl::Status s = scheduler_.ReportMigration(result).status();
    if (s.ok()) return;
    const absl::StatusCode code = s.code();
    const bool transient =
        code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
        code == absl::StatusCode::kAborted || code == absl::StatusCode::kResourceExhausted ||
        code == absl::StatusCode::kUnknown || code == absl::StatusCode::kInternal;
    if (!transient || stopping()) {
      Event(result.vm(), api::v1::EVENT_KIND_MIGRATION_REPORT_FAILED,
            absl::StrCat("reporting the migration (order ", result.order_id(), "): ", s.message()));
      return;
    }
    absl::SleepFor(wait);  // real time: the scheduler's recovery does not follow a test's clock
    wait = std::min(wait * 2, absl::Seconds(5));
  }
}

namespace {

// The target agent, as the migration's state machine asks it (FinishIncoming).
class PeerTarget final : public neonvm::migration::Target {
 public:
  PeerTarget(rpc::agent_peer::MigrationPeer& peer, const api::v1::MigrationOrder& order,
             std::string uri)
      : peer_(peer), order_(order), uri_(std::move(uri)) {}

  const std::string& uri() const override { return uri_; }
  absl::Status Abandon(const std::string& why) override {
    absl::Status s = peer_.FinishIncoming(Request(false, why, false));
    return s.code() == absl::StatusCode::kNotFound ? absl::OkStatus() : s;
  }
  absl::Status Commit(bool expect_running) override {
    return peer_.FinishIncoming(Request(true, "", expect_running));
  }

 private:
  api::v1::FinishIncomingRequest Request(bool succeeded, const std::string& why,
                                         bool running) const {
    api::v1::FinishIncomingRequest r;
    r.set_order_id(order_.id());
    r.set_vm(order_.vm());
    r.set_succeeded(succeeded);
    r.set_error(why);
    r.set_expect_running(running);
    return r;
  }

  rpc::agent_peer::MigrationPeer& peer_;
  const api::v1::MigrationOrder order_;
  const std::string uri_;
};

}  // namespace

void Agent::Migrate(api::v1::MigrationOrder order) {
  const std::string& name = order.vm();
  Runner* runner = nullptr;
  neonvm::migration::Source* source = nullptr;
  api::v1::VmConfig config;
  api::v1::MigrationSettings settings;
  {
    absl::MutexLock lock(&mu_);
    settings = config_.migration();
    auto it = vms_.find(name);
    if (it != vms_.end()) {
      runner = it->second.runner.get();
      source = it->second.migration.get();
      config = it->second.config;
    }
  }
  // Every way this ends: the VM's flags, and this thread handed to the supervisor to join.
  auto end = [&](bool forget) {
    absl::MutexLock lock(&mu_);
    migrating_.erase(order.id());
    auto it = vms_.find(name);
    if (it != vms_.end()) {
      if (forget) {
        departed_.insert(name);
      } else {
        it->second.migrating = false;
      }
    }
    if (auto t = migrations_.find(order.id()); t != migrations_.end()) {
      ended_.push_back(std::move(t->second));
      migrations_.erase(t);
    }
  };
  auto report = [&](bool succeeded, const std::string& error) {
    api::v1::MigrationResult r;
    r.set_order_id(order.id());
    r.set_vm(name);
    r.set_succeeded(succeeded);
    r.set_error(error);
    Report(r);
  };
  // Failing before anything reached the target: the VM stays, resizing resumes.
  auto refuse = [&](const absl::Status& why) {
    Event(name, api::v1::EVENT_KIND_MIGRATION_FAILED,
          absl::StrCat("migration to node ", order.target_node(), " not started: ", why.message()));
    metrics_.Add("autoscaling_agent_migrations_total",
                 {{"direction", "out"}, {"result", "failed"}});
    report(false, std::string(why.message()));
    if (runner != nullptr) runner->EndMigration();
    end(false);
  };
  if (runner == nullptr || source == nullptr) {
    return refuse(absl::NotFoundError("the VM is not managed here"));
  }
  Event(name, api::v1::EVENT_KIND_MIGRATION_STARTED,
        absl::StrCat("migrating to node ", order.target_node(), " (order ", order.id(), ")"));
  absl::StatusOr<bool> kvm = source->KvmEnabled(absl::Seconds(10));
  if (!kvm.ok()) return refuse(kvm.status());
  absl::StatusOr<neonvm::migration::MigrationOptions> options_or =
      MigrationOptionsFor(settings, config, *kvm);
  if (!options_or.ok()) return refuse(options_or.status());
  neonvm::migration::MigrationOptions options = *options_or;
  options.timeout = options_.migration_timeout;
  if (!options_.migration_tls_dir.empty()) {
    // The stream goes only to a QEMU holding the ordered target node's certificate.
    options.tls_dir = options_.migration_tls_dir;
    options.tls_hostname = absl::StrCat("node-", order.target_node());
  }
  if (absl::Status s = runner->BeginMigration(absl::Seconds(30)); !s.ok()) return refuse(s);
  absl::StatusOr<std::unique_ptr<rpc::agent_peer::MigrationPeer>> connected =
      connect_peer_(order.target_agent_address(), order.target_node());
  if (!connected.ok()) return refuse(connected.status());
  std::unique_ptr<rpc::agent_peer::MigrationPeer> peer = *std::move(connected);

  // A migration QEMU already carries out (this agent restarted in the middle of it) is taken up:
  // its target is prepared already.
  absl::StatusOr<std::string> run_state = source->RunState(absl::Seconds(10));
  absl::StatusOr<neonvm::migration::Progress> progress =
      run_state.ok() ? source->Query(absl::Seconds(10)) : run_state.status();
  std::string uri;
  if (!progress.ok() || !neonvm::migration::MigrationStarted(progress->status, *run_state)) {
    absl::StatusOr<neonvm::migration::Devices> devices = source->CaptureDevices(absl::Seconds(10));
    if (!devices.ok()) return refuse(devices.status());
    api::v1::PrepareIncomingRequest prepare;
    prepare.set_order_id(order.id());
    *prepare.mutable_vm() = config;
    prepare.mutable_vm()->set_allow_postcopy(options.allow_postcopy);
    // The token itself goes (the target's QEMU hands the guest the same one), not this node's path.
    prepare.mutable_vm()->clear_agent_token_file();
    prepare.set_agent_token(runner->agent_token());
    for (const std::string& args : devices->cpu_device_add_args) {
      prepare.add_cpu_device_add_args(args);
    }
    if (devices->virtio_mem_requested_bytes) {
      prepare.set_has_virtio_mem(true);
      prepare.set_virtio_mem_requested_bytes(*devices->virtio_mem_requested_bytes);
    }
    *prepare.mutable_current() = core::ToProto(runner->Status().current);
    absl::StatusOr<api::v1::PrepareIncomingResponse> target = peer->PrepareIncoming(prepare);
    if (!target.ok()) {
      // It may have started one whose answer was lost: it goes.
      (void)PeerTarget(*peer, order, "").Abandon(std::string(target.status().message()));
      return refuse(target.status());
    }
    uri = target->uri();
  }

  PeerTarget target(*peer, order, uri);
  neonvm::migration::MigrationResult r = neonvm::migration::RunMigration(
      *source, target, options, options_.migration_retry, [this] { return stopping(); });
  switch (r.outcome) {
    case neonvm::migration::Outcome::kMigrated: {
      report(true, "");
      std::unique_ptr<Runner> gone;
      std::unique_ptr<neonvm::migration::Source> gone_source;
      {
        absl::MutexLock lock(&mu_);
        if (auto it = vms_.find(name); it != vms_.end()) {
          gone = std::move(it->second.runner);
          gone_source = std::move(it->second.migration);
          vms_.erase(it);
        }
      }
      end(/*forget=*/true);
      gone.reset();
      gone_source.reset();
      metrics_.Forget({"vm", name});
      metrics_.Add("autoscaling_agent_migrations_total", {{"direction", "out"}, {"result", "ok"}});
      Event(name, api::v1::EVENT_KIND_MIGRATED_OUT,
            absl::StrFormat("migrated to node %s%s in %s (downtime %s, %d MiB sent%s%s)%s",
                            order.target_node(), uri.empty() ? "" : absl::StrCat(" at ", uri),
                            absl::FormatDuration(r.stats.total_time),
                            absl::FormatDuration(r.stats.downtime), r.stats.transferred_bytes >> 20,
                            r.stats.postcopy ? ", postcopy" : "",
                            options.tls_dir.empty() ? "" : ", over TLS",
                            r.error.ok() ? "" : absl::StrCat("; ", r.error.message())),
            r.stats.total_time);
      return;
    }
    case neonvm::migration::Outcome::kStayed:
      Event(name, api::v1::EVENT_KIND_MIGRATION_FAILED,
            absl::StrCat("migration failed; the VM stays here: ", r.error.message()));
      metrics_.Add("autoscaling_agent_migrations_total",
                   {{"direction", "out"}, {"result", "failed"}});
      report(false, std::string(r.error.message()));
      runner->EndMigration();
      end(false);
      return;
    case neonvm::migration::Outcome::kLost: {
      Event(name, api::v1::EVENT_KIND_VM_LOST,
            absl::StrCat("lost in its migration to node ", order.target_node(),
                         " (the failure came after the point of no return; the source QEMU is "
                         "left paused): ",
                         r.error.message()));
      metrics_.Add("autoscaling_agent_migrations_total",
                   {{"direction", "out"}, {"result", "lost"}});
      report(false, absl::StrCat("lost: ", r.error.message()));
      std::unique_ptr<Runner> stopped;
      {
        absl::MutexLock lock(&mu_);
        if (auto it = vms_.find(name); it != vms_.end()) {
          stopped = std::move(it->second.runner);
          it->second.lost = true;
          it->second.last_error = absl::StrCat("lost in a migration: ", r.error.message());
        }
      }
      stopped.reset();
      end(false);
      return;
    }
    case neonvm::migration::Outcome::kInterrupted:
      // The agent stops; nothing was decided (a restarted agent takes the migration up).
      end(false);
      return;
  }
}

absl::StatusOr<Agent::CheckedIncoming> Agent::CheckIncoming(
    const std::optional<std::string>& caller, const api::v1::PrepareIncomingRequest& request) {
  const std::string& name = request.vm().name();
  const uint64_t id = request.order_id();
  if (name.empty()) return absl::InvalidArgumentError("incoming VM without a name");
  if (name.size() > kMaxVmNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("incoming VM name of ", name.size(),
                                                   " bytes (at most ", kMaxVmNameBytes, ")"));
  }
  const std::string what = absl::StrCat("incoming migration of VM ", name, " (order ", id, ")");
  std::string node;
  api::v1::VmConfig trusted;
  {
    absl::MutexLock lock(&mu_);
    node = config_.node();
    const api::v1::VmConfig* found = nullptr;
    for (const auto* list : {&config_.incoming_vms(), &config_.vms()}) {
      for (const api::v1::VmConfig& vm : *list) {
        if (found == nullptr && vm.name() == name) found = &vm;
      }
    }
    if (found == nullptr) {
      return absl::PermissionDeniedError(absl::StrCat(
          what, ": VM ", name, " is not one node ", node, " may receive (not in its incomingVms)"));
    }
    trusted = *found;
  }
  // Before the scheduler is asked: a caller that no node's certificate names (a VM's monitor,
  // the admin) must not make this agent spend its own scheduler budget.
  if (caller && caller->empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, ": asked by a caller without a node identity"));
  }
  // The scheduler alone orders migrations: only one it ordered to this node is taken.
  api::v1::MigrationOrdersRequest ask;
  ask.set_node(node);
  ask.set_as_target(true);
  absl::StatusOr<api::v1::MigrationOrdersResponse> orders = scheduler_.GetMigrationOrders(ask);
  if (!orders.ok()) {
    return absl::UnavailableError(absl::StrCat(
        what, ": cannot check the order with the scheduler: ", orders.status().message()));
  }
  const api::v1::MigrationOrder* order = nullptr;
  for (const api::v1::MigrationOrder& o : orders->orders()) {
    if (o.id() == id && o.vm() == name && o.target_node() == node) order = &o;
  }
  if (order == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, ": the scheduler has no such order moving VM ", name, " to node ", node));
  }
  if (caller && *caller != order->source_node()) {  // an empty one was refused above
    return absl::PermissionDeniedError(absl::StrCat(what, ": asked by node ", *caller,
                                                    ", not by the order's source node ",
                                                    order->source_node()));
  }

  // The QEMU is started from this node's own config; the source gives only sizes, checked here
  // against the VM's bounds and spec (the CPU slots themselves against the QEMU's own, when
  // they are plugged: neonvm/migration StartIncoming).
  CheckedIncoming checked;
  checked.source_node = order->source_node();
  api::v1::PrepareIncomingRequest& out = checked.request;
  out.set_order_id(id);
  trusted.clear_qmp();
  trusted.clear_monitor_address();
  trusted.clear_host_cgroup();
  // Which migration mode the source chose (its KVM decides): a mode, not a path or a device.
  trusted.set_allow_postcopy(request.vm().allow_postcopy());
  *out.mutable_vm() = trusted;
  const neonvm::launcher::VmSpec spec = SpecFromProto(trusted.spec());
  Resources cu;
  {
    absl::MutexLock lock(&mu_);
    cu = compute_unit_;
  }
  const int64_t max_cu = trusted.bounds().max_cu();
  const Resources current{request.current().milli_cpu(), request.current().memory_bytes()};
  if (current.milli_cpu <= 0 || current.memory_bytes <= 0 ||
      current.milli_cpu > max_cu * cu.milli_cpu ||
      current.memory_bytes > max_cu * cu.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": its size ", current.ToString(),
                                                   " is not within its bounds here (at most ",
                                                   max_cu, " CU of ", cu.ToString(), ")"));
  }
  *out.mutable_current() = request.current();
  const int hotpluggable = spec.cpus_max - spec.cpus_min;
  if (request.cpu_device_add_args_size() > hotpluggable) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", request.cpu_device_add_args_size(),
                                                   " hot-plugged vCPUs, its spec here takes ",
                                                   hotpluggable));
  }
  for (const std::string& args : request.cpu_device_add_args()) out.add_cpu_device_add_args(args);
  if (request.has_virtio_mem()) {
    const int64_t most =
        int64_t{spec.memory_slots_max - spec.memory_slots_min} * spec.memory_slot_bytes;
    const int64_t bytes = request.virtio_mem_requested_bytes();
    if (most == 0 || bytes < 0 || bytes > most || bytes % spec.memory_slot_bytes != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": virtio-mem size ", bytes, " is not a whole number of ",
                       spec.memory_slot_bytes, "-byte slots up to ", most, " (its spec here)"));
    }
    out.set_has_virtio_mem(true);
    out.set_virtio_mem_requested_bytes(bytes);
  }
  // The VM's agent token: a value the target's QEMU gets in its own runtime directory (never a
  // path), of a token's size.
  if (request.agent_token().size() > rpc::monitor::kMaxAgentTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": an agent token of ",
                                                   request.agent_token().size(), " bytes (at most ",
                                                   rpc::monitor::kMaxAgentTokenBytes, ")"));
  }
  out.set_agent_token(request.agent_token());
  return checked;
}

absl::StatusOr<api::v1::PrepareIncomingResponse> Agent::PrepareIncoming(
    const api::v1::PrepareIncomingRequest& request) {
  return PrepareIncomingFrom(std::nullopt, request);
}

absl::Status Agent::FinishIncoming(const api::v1::FinishIncomingRequest& request) {
  return FinishIncomingFrom(std::nullopt, request);
}

class Agent::Caller final : public rpc::agent_peer::MigrationPeer {
 public:
  Caller(Agent& agent, std::optional<std::string> node) : agent_(agent), node_(std::move(node)) {}
  absl::StatusOr<api::v1::PrepareIncomingResponse> PrepareIncoming(
      const api::v1::PrepareIncomingRequest& request) override {
    return agent_.PrepareIncomingFrom(node_, request);
  }
  absl::Status FinishIncoming(const api::v1::FinishIncomingRequest& request) override {
    return agent_.FinishIncomingFrom(node_, request);
  }

 private:
  Agent& agent_;
  const std::optional<std::string> node_;
};

std::shared_ptr<rpc::agent_peer::MigrationPeer> Agent::ForCaller(const std::string& identity) {
  std::optional<std::string> node;
  if (options_.require_peer_identity) {
    // A node's agent of this trust domain, or nobody ("": refused as a source).
    const rpc::Identity who = rpc::ParseIdentity(identity);
    const bool trusted =
        who.role == rpc::Identity::Role::kNode &&
        (options_.trust_domain.empty() || who.trust_domain == options_.trust_domain);
    node = trusted ? who.name : "";
  }
  return std::make_shared<Caller>(*this, std::move(node));
}

absl::StatusOr<api::v1::PrepareIncomingResponse> Agent::PrepareIncomingFrom(
    const std::optional<std::string>& caller, const api::v1::PrepareIncomingRequest& request) {
  const uint64_t id = request.order_id();
  // A name too long for the log is not one this node knows anyway.
  const std::string name = request.vm().name().substr(0, kMaxVmNameBytes);
  absl::StatusOr<CheckedIncoming> checked = CheckIncoming(caller, request);
  if (!checked.ok()) {
    Event(name, api::v1::EVENT_KIND_INCOMING_REFUSED, std::string(checked.status().message()));
    metrics_.Add("autoscaling_agent_migrations_total",
                 {{"direction", "in"}, {"result", "refused"}});
    return checked.status();
  }
  {
    absl::MutexLock lock(&mu_);
    // A target is single-use: one per order, the first call's.
    if (incoming_.contains(id) || finished_incoming_.contains(id) ||
        !preparing_.emplace(id, checked->source_node).second) {
      return absl::AlreadyExistsError(absl::StrCat("incoming migration of VM ", name, " (order ",
                                                   id, "): this order has had its target here"));
    }
  }
  absl::StatusOr<std::unique_ptr<IncomingVm>> vm =
      vms_factory_.StartIncoming(checked->request, checked->source_node);
  absl::MutexLock lock(&mu_);
  preparing_.erase(id);
  if (!vm.ok()) return vm.status();
  if (auto f = finished_incoming_.find(id); f != finished_incoming_.end()) {
    // Its source gave up (its call timed out) while the QEMU started: that QEMU goes now (the
    // IncomingVm stops it), or it would run here with no reservation behind it.
    return absl::AbortedError(
        absl::StrCat("incoming migration of VM ", name, " (order ", id,
                     "): abandoned by its source while it started: ", f->second.why));
  }
  api::v1::PrepareIncomingResponse response;
  response.set_uri((*vm)->uri());
  incoming_[id] = Incoming{checked->request.vm(), checked->source_node, *std::move(vm)};
  Event(name, api::v1::EVENT_KIND_INCOMING_PREPARED,
        absl::StrCat("incoming migration prepared (order ", id, ")"));
  return response;
}

absl::Status Agent::FinishIncomingFrom(const std::optional<std::string>& caller,
                                       const api::v1::FinishIncomingRequest& request) {
  const uint64_t id = request.order_id();
  Incoming in;
  {
    absl::MutexLock lock(&mu_);
    auto not_source = [&](const std::string& source) -> absl::Status {
      if (!caller || *caller == source) return absl::OkStatus();
      return absl::PermissionDeniedError(
          absl::StrCat("order ", id, ": finished by ",
                       caller->empty() ? "a caller without a node identity" : "node " + *caller,
                       ", not by its source node ", source));
    };
    if (auto f = finished_incoming_.find(id); f != finished_incoming_.end()) {
      RETURN_IF_ERROR(not_source(f->second.source_node));
      // Asked again (the answer was lost): the same answer.
      if (request.succeeded() == f->second.taken_over) return absl::OkStatus();
      return absl::FailedPreconditionError(
          f->second.taken_over ? absl::StrCat("order ", id, ": the VM runs here already")
                               : absl::StrCat("order ", id, ": ", f->second.why));
    }
    if (auto p = preparing_.find(id); p != preparing_.end()) {
      RETURN_IF_ERROR(not_source(p->second));
      if (request.succeeded()) {
        return absl::UnavailableError(absl::StrCat("order ", id, ": still being prepared"));
      }
      // Abandoned before its QEMU is up: PrepareIncomingFrom stops it when it is.
      finished_incoming_[id] =
          Finished{.taken_over = false,
                   .why = request.error().empty() ? "abandoned" : request.error(),
                   .source_node = p->second};
      return absl::OkStatus();
    }
    auto it = incoming_.find(id);
    if (it == incoming_.end()) {
      return absl::NotFoundError(absl::StrCat("no incoming migration ", id));
    }
    RETURN_IF_ERROR(not_source(it->second.source_node));
    if (it->second.finishing) {
      return absl::UnavailableError(absl::StrCat("order ", id, ": still being finished"));
    }
    it->second.finishing = true;
    in.config = it->second.config;
    in.source_node = it->second.source_node;
  }
  IncomingVm* vm;
  {
    absl::MutexLock lock(&mu_);
    vm = incoming_.at(id).vm.get();
  }
  if (!request.succeeded()) {
    DropIncoming(id, "abandoned by the source: " + request.error());
    return absl::OkStatus();
  }
  if (absl::Status s = vm->AwaitArrival(request.expect_running(), options_.incoming_timeout);
      !s.ok()) {
    // It does not run here: its copy goes, so the source may resume.
    const std::string why =
        absl::StrCat("the VM did not arrive here (", s.message(), "); its copy here is stopped");
    DropIncoming(id, why);
    return absl::FailedPreconditionError(why);
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = incoming_.find(id);
    in.vm = std::move(it->second.vm);
    incoming_.erase(it);
    finished_incoming_[id] = Finished{.taken_over = true, .why = "", .source_node = in.source_node};
  }
  return TakeOver(id, std::move(in));
}

void Agent::DropIncoming(uint64_t id, const std::string& why) {
  IncomingVm* vm;
  std::string name;
  std::string source;
  {
    absl::MutexLock lock(&mu_);
    auto it = incoming_.find(id);
    if (it == incoming_.end()) return;  // not claimed after all
    const Incoming& in = it->second;
    vm = in.vm.get();
    name = in.config.name();
    source = in.source_node;
  }
  (void)vm->Stop();
  std::unique_ptr<IncomingVm> gone;
  {
    absl::MutexLock lock(&mu_);
    auto it = incoming_.find(id);
    gone = std::move(it->second.vm);
    incoming_.erase(it);
    finished_incoming_[id] = Finished{.taken_over = false, .why = why, .source_node = source};
  }
  Event(name, api::v1::EVENT_KIND_INCOMING_ABANDONED, why);
  metrics_.Add("autoscaling_agent_migrations_total", {{"direction", "in"}, {"result", "failed"}});
}

absl::Status Agent::TakeOver(uint64_t order, Incoming in) {
  const std::string name = in.config.name();
  api::v1::VmConfig config = in.config;
  config.set_qmp(in.vm->qmp_address());
  // The source's group stays with the source; the VM's quota is now its target QEMU's.
  config.set_host_cgroup(in.vm->host_cgroup());
  config.set_monitor_address("");
  // The token the source sent, as this node's QEMU got it (its own runtime directory).
  config.set_agent_token_file(in.vm->agent_token_file());
  if (config.monitor_guest_port() > 0) {
    absl::StatusOr<std::string> monitor = in.vm->MonitorAddress(config.monitor_guest_port());
    if (monitor.ok()) config.set_monitor_address(*monitor);
  }
  // The VM runs here whatever happens next: a runner that cannot start now is retried by the
  // supervisor, as any other.
  std::unique_ptr<Runner> runner;
  std::unique_ptr<neonvm::migration::Source> migration;
  absl::Status started = StartRunner(config, runner, migration);
  {
    absl::MutexLock lock(&mu_);
    departed_.erase(name);
    Managed& m = vms_[name];
    m = Managed();
    m.config = config;
    m.runner = std::move(runner);
    m.migration = std::move(migration);
    m.owned = std::move(in.vm);
    if (!started.ok()) {
      m.last_error = std::string(started.message());
      m.restart_at = clock_.Now() + options_.restart_min;
    }
  }
  metrics_.Add("autoscaling_agent_migrations_total", {{"direction", "in"}, {"result", "ok"}});
  Event(name, api::v1::EVENT_KIND_MIGRATED_IN,
        absl::StrCat("migrated in (order ", order, "): this node manages the VM now"));
  if (!started.ok()) {
    Event(name, api::v1::EVENT_KIND_RUNNER_START_FAILED,
          std::string("cannot start: ") + std::string(started.message()));
  }
  return absl::OkStatus();
}

std::vector<RunnerStatus> Agent::Statuses() const {
  std::vector<RunnerStatus> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, m] : vms_) {
    if (m.runner) {
      out.push_back(m.runner->Status());
    } else {
      RunnerStatus s;
      s.vm = name;
      out.push_back(s);
    }
  }
  return out;
}

api::v1::AgentStatus Agent::Status(uint64_t since) const {
  api::v1::AgentStatus status;
  std::map<std::string, std::string> serial;  // the consoles of the QEMUs this agent owns
  std::map<std::string, std::string> errors;  // why a VM has no runner
  std::map<std::string, std::string> cgroups;
  {
    absl::MutexLock lock(&mu_);
    status.set_node(config_.node());
    for (const auto& [name, m] : vms_) {
      if (m.owned) serial[name] = m.owned->serial_path();
      cgroups[name] = m.config.host_cgroup();
      if (!m.runner) errors[name] = m.last_error;
    }
  }
  for (const RunnerStatus& s : Statuses()) {
    api::v1::VmStatus& v = *status.add_vms();
    v.set_vm(s.vm);
    if (auto it = serial.find(s.vm); it != serial.end()) v.set_serial(it->second);
    if (auto it = errors.find(s.vm); it != errors.end()) v.set_error(it->second);
    if (auto it = cgroups.find(s.vm); it != cgroups.end()) v.set_host_cgroup(it->second);
    *v.mutable_current() = core::ToProto(s.current);
    if (s.observed) *v.mutable_observed() = core::ToProto(*s.observed);
    if (s.permit) *v.mutable_permit() = core::ToProto(*s.permit);
    *v.mutable_desired() = core::ToProto(s.desired.resources);
    v.set_goal_cu(s.desired.goal.goal_cu);
    v.set_decided_by(core::SignalName(s.desired.decided_by));
    v.set_monitor_connected(s.monitor_connected);
    v.set_migrating(s.migrating);
    v.set_metrics_stale(s.metrics_stale);
    if (s.metrics) {
      v.set_load_avg_1m(s.metrics->load_avg_1m());
      v.set_memory_usage_bytes(s.metrics->memory_usage_bytes());
    }
    v.set_upscale_requests(s.upscale_requests);
  }
  for (const agent::Event& e : events_.Since(since)) *status.add_events() = ToProto(e);
  return status;
}

std::string Agent::StatusJson(uint64_t since) const { return ToJson(Status(since)); }

ConfigFileWatcher::ConfigFileWatcher(Agent& agent, std::string path, absl::Duration interval)
    : agent_(agent), path_(std::move(path)), interval_(interval) {
  {
    absl::MutexLock lock(&mu_);
    last_text_ = ReadFile(path_).value_or("");
  }
  thread_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), interval_)) return;
      }
      CheckNow();
    }
  });
}

ConfigFileWatcher::~ConfigFileWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void ConfigFileWatcher::CheckNow() {
  absl::StatusOr<std::string> text = ReadFile(path_);
  {
    absl::MutexLock lock(&mu_);
    if (!text.ok() || *text == last_text_) return;
    last_text_ = *text;
  }
  absl::StatusOr<api::v1::AgentConfig> config = LoadAgentConfig(path_);
  if (!config.ok()) {
    agent_.events().Add(absl::Now(), "", api::v1::EVENT_KIND_CONFIG_REJECTED,
                        absl::StrCat("config not applied: ", config.status().message()));
    return;
  }
  (void)agent_.UpdateConfig(*config);  // an error is in the event log
}

}  // namespace autoscale::agent
