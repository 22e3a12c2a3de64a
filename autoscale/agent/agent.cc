#include "autoscale/agent/agent.h"

#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/base/proto_duration.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "glog/logging.h"
#include "neonvm/migration/migration.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace autoscale::agent {
namespace {

using core::Resources;

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

api::Resources Proto(const Resources& r) { return core::ToProto(r); }

}  // namespace

absl::StatusOr<neonvm::migration::MigrationOptions> MigrationOptionsFromProto(
    const api::MigrationSettings& s) {
  neonvm::migration::MigrationOptions o;
  o.auto_converge = s.auto_converge();
  const absl::Duration downtime = FromProto(s.downtime_limit());
  if (downtime != absl::ZeroDuration()) {
    // QEMU takes whole milliseconds up to 2000 s.
    if (downtime < absl::Milliseconds(1) || downtime > absl::Seconds(2000)) {
      return absl::InvalidArgumentError(
          absl::StrCat("migration.downtimeLimit: must be within 1ms..2000s, got ",
                       absl::FormatDuration(downtime)));
    }
    o.downtime_limit = downtime;
  }
  if (s.max_bandwidth_bytes_per_second() < 0) {
    return absl::InvalidArgumentError("migration.maxBandwidthBytesPerSecond: must not be negative");
  }
  if (s.max_bandwidth_bytes_per_second() > 0) {
    o.max_bandwidth_bytes_per_second = s.max_bandwidth_bytes_per_second();
  }
  if (s.postcopy_after_passes() > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "migration.postcopyAfterPasses: at most 1000, got ", s.postcopy_after_passes()));
  }
  if (s.postcopy_after_passes() > 0) {
    o.postcopy_after_passes = static_cast<int>(s.postcopy_after_passes());
  }
  return o;
}

absl::StatusOr<api::AgentConfig> LoadAgentConfig(const std::string& path) {
  api::AgentConfig c;
  RETURN_IF_ERROR(ReadProtoFile(path, c));
  if (c.node().empty()) return Invalid(path, "node: required");
  if (c.scheduler_address().empty()) return Invalid(path, "schedulerAddress: required");
  auto annotate = [&](const absl::Status& s) { return Annotate(s, path); };
  absl::StatusOr<Resources> cu_or = core::ComputeUnitFromProto(c.compute_unit());
  RETURN_IF_ERROR(annotate(cu_or.status()));
  const Resources cu = *cu_or;
  RETURN_IF_ERROR(annotate(core::ResolveScalingConfig(c.scaling()).status()));
  RETURN_IF_ERROR(annotate(core::ResolveTimings(c.timings()).status()));
  RETURN_IF_ERROR(annotate(MigrationOptionsFromProto(c.migration()).status()));
  std::set<std::string> names;
  for (int i = 0; i < c.vms_size(); ++i) {
    const api::VmConfig& vm = c.vms(i);
    const std::string field = absl::StrCat("vms[", i, "]");
    if (vm.name().empty()) return Invalid(path, field + ".name: required");
    if (!names.insert(vm.name()).second) {
      return Invalid(path, absl::StrCat(field, ".name: '", vm.name(), "' appears twice"));
    }
    if (vm.qmp().empty()) return Invalid(path, field + ".qmp: required");
    RETURN_IF_ERROR(
        annotate(core::BoundsFromProto(vm.bounds(), (field + ".bounds").c_str()).status()));
    RETURN_IF_ERROR(annotate(core::ResolveScalingConfig(c.scaling(), vm.scaling()).status()));
    RETURN_IF_ERROR(Annotate(neonvm::launcher::Validate(SpecFromProto(vm.spec())),
                             path + ": " + field + ".spec"));
    if (cu.memory_bytes % vm.spec().memory_slot_bytes() != 0) {
      return Invalid(path, absl::StrCat(field, ".spec.memorySlotBytes: the compute unit's memory (",
                                        cu.memory_bytes, ") must be a whole number of slots (",
                                        vm.spec().memory_slot_bytes(), ")"));
    }
  }
  return c;
}

Agent::Agent(AgentOptions options, rpc::scheduler::SchedulerService& scheduler,
             MonitorConnector connect_monitor, PeerConnector connect_peer, Clock& clock)
    : options_(std::move(options)),
      scheduler_(scheduler),
      connect_monitor_(std::move(connect_monitor)),
      connect_peer_(std::move(connect_peer)),
      clock_(clock) {
  metrics_.Describe("autoscaling_vm_desired_cu", Metrics::kGauge,
                    "The size the VM should have, in compute units.");
  metrics_.Describe("autoscaling_vm_goal_cu", Metrics::kGauge,
                    "The goal before bounds and adjustments, in compute units.");
  metrics_.Describe("autoscaling_vm_goal_part_cu", Metrics::kGauge,
                    "Each part of the goal (cpu, mem, mem_total, lfc), in compute units.");
  metrics_.Describe("autoscaling_vm_cpu_milli", Metrics::kGauge,
                    "The VM's milli-CPU: current, and its permit.");
  metrics_.Describe("autoscaling_vm_memory_bytes", Metrics::kGauge,
                    "The VM's memory: current, and its permit.");
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
}

Agent::~Agent() { Stop(); }

absl::Status Agent::Start() {
  ASSIGN_OR_RETURN(api::AgentConfig config, LoadAgentConfig(options_.config_path));
  {
    absl::MutexLock lock(&mu_);
    config_text_ = ReadFile(options_.config_path).value_or("");
    RETURN_IF_ERROR(ApplyConfig(config));
  }
  api::RegisterNodeRequest reg;
  reg.set_node(config.node());
  *reg.mutable_total() = config.node_total();
  reg.set_watermark(config.watermark());
  reg.set_agent_address(options_.address);
  absl::StatusOr<api::RegisterNodeResponse> registered = scheduler_.RegisterNode(reg);
  if (!registered.ok()) {
    // The runners' requests fail until the node is known; the supervisor retries.
    Event("-", "error",
          absl::StrCat("registering node ", config.node(),
                       " with the scheduler: ", registered.status().message()));
  } else {
    Event("-", "node",
          absl::StrCat("node ", config.node(), " registered with the scheduler (",
                       config.node_total().milli_cpu(), "m, ",
                       config.node_total().memory_bytes() >> 20, " MiB)"));
  }
  supervisor_ = std::thread([this, registered = registered.ok()] {
    bool node_registered = registered;
    absl::Time next_config = absl::InfinitePast(), next_orders = absl::InfinitePast();
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(200))) return;
      }
      const absl::Time now = clock_.Now();
      if (!node_registered) {
        api::RegisterNodeRequest r;
        {
          absl::MutexLock lock(&mu_);
          r.set_node(config_.node());
          *r.mutable_total() = config_.node_total();
          r.set_watermark(config_.watermark());
        }
        r.set_agent_address(options_.address);
        node_registered = scheduler_.RegisterNode(r).ok();
        if (node_registered) Event("-", "node", "node registered with the scheduler");
      }
      if (now >= next_config) {
        next_config = now + options_.config_check_interval;
        absl::StatusOr<std::string> text = ReadFile(options_.config_path);
        absl::MutexLock lock(&mu_);
        if (text.ok() && *text != config_text_) {
          config_text_ = *text;
          absl::StatusOr<api::AgentConfig> fresh = LoadAgentConfig(options_.config_path);
          absl::Status applied = fresh.ok() ? ApplyConfig(*fresh) : fresh.status();
          if (!applied.ok()) {
            Event("-", "error", absl::StrCat("config not applied: ", applied.message()));
          } else {
            Event("-", "config", "config file re-read");
          }
        }
      }
      Supervise();
      if (now >= next_orders) {
        next_orders = now + options_.migration_poll_interval;
        api::MigrationOrdersRequest request;
        {
          absl::MutexLock lock(&mu_);
          request.set_node(config_.node());
        }
        absl::StatusOr<api::MigrationOrdersResponse> orders =
            scheduler_.GetMigrationOrders(request);
        if (orders.ok()) {
          for (const api::MigrationOrder& order : orders->orders()) OnMigrationOrder(order);
        }
      }
    }
  });
  return absl::OkStatus();
}

void Agent::Stop() {
  std::vector<std::thread> migrations;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !supervisor_.joinable()) return;
    stopping_ = true;
    migrations = std::move(migrations_);
  }
  if (supervisor_.joinable()) supervisor_.join();
  for (std::thread& t : migrations) t.join();
  std::map<std::string, Managed> vms;
  std::map<uint64_t, Incoming> incoming;
  {
    absl::MutexLock lock(&mu_);
    vms = std::move(vms_);
    incoming = std::move(incoming_);
  }
  for (auto& [name, m] : vms) {
    if (m.runner) m.runner->Stop();
  }
}

absl::Status Agent::ApplyConfig(const api::AgentConfig& config) {
  ASSIGN_OR_RETURN(Resources cu, core::ComputeUnitFromProto(config.compute_unit()));
  if (!config_.node().empty() && config.node() != config_.node()) {
    return absl::InvalidArgumentError(
        absl::StrCat("node cannot change (was ", config_.node(), ", now ", config.node(), ")"));
  }
  compute_unit_ = cu;
  config_ = config;
  std::set<std::string> listed;
  for (const api::VmConfig& vm : config.vms()) {
    if (departed_.contains(vm.name())) continue;
    listed.insert(vm.name());
    auto it = vms_.find(vm.name());
    if (it == vms_.end()) {
      vms_[vm.name()] = Managed{vm, nullptr, absl::InfinitePast(), "", nullptr};
      continue;
    }
    Managed& m = it->second;
    api::VmConfig next = vm;
    if (m.owned) {
      // Came in by migration: this agent started its QEMU, so the addresses are its own; the
      // config still sets the bounds and scaling.
      next.set_qmp(m.config.qmp());
      next.set_monitor_address(m.config.monitor_address());
    }
    const bool same_place =
        m.config.qmp() == next.qmp() && m.config.monitor_address() == next.monitor_address();
    m.config = std::move(next);
    if (!m.runner) continue;
    if (!same_place) {
      m.restart_at = absl::InfinitePast();  // the supervisor restarts it with the new addresses
      m.last_error = "config changed";
      continue;
    }
    ASSIGN_OR_RETURN(core::Bounds bounds, core::BoundsFromProto(vm.bounds()));
    ASSIGN_OR_RETURN(core::ScalingConfig scaling,
                     core::ResolveScalingConfig(config.scaling(), vm.scaling()));
    m.runner->Update(bounds, scaling);
  }
  for (auto& [name, m] : vms_) {
    if (!m.owned && !listed.contains(name)) m.last_error = "removed from the config";
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Runner>> Agent::MakeRunner(const api::VmConfig& vm,
                                                          const std::string& qmp_address,
                                                          const std::string& monitor_address) {
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
  o.monitor_address = monitor_address;
  o.monitor_retry = options_.monitor_retry;
  o.monitor_health_interval = options_.monitor_health_interval;
  o.on_migration_order = [this](const api::MigrationOrder& order) { OnMigrationOrder(order); };
  ASSIGN_OR_RETURN(std::unique_ptr<VmDriver> driver,
                   NewQmpVmDriver(qmp_address, SpecFromProto(vm.spec()), cu));
  auto runner = std::make_unique<Runner>(std::move(o), std::move(driver), scheduler_,
                                         connect_monitor_, events_, metrics_, clock_);
  RETURN_IF_ERROR(runner->Start());
  return runner;
}

void Agent::Supervise() {
  // Runners to stop (failed, removed, or moved): stopped outside the lock, because their threads
  // call back into the agent.
  std::vector<std::unique_ptr<Runner>> to_stop;
  std::vector<api::VmConfig> to_start;
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    static thread_local std::mt19937_64 rng(std::random_device{}());
    for (auto it = vms_.begin(); it != vms_.end();) {
      Managed& m = it->second;
      if (m.migrating) {  // the migration decides what becomes of it
        ++it;
        continue;
      }
      if (m.last_error == "removed from the config") {
        if (m.runner) to_stop.push_back(std::move(m.runner));
        metrics_.Forget({"vm", it->first});
        Event(it->first, "config", "no longer in the config: not managed any more");
        it = vms_.erase(it);
        continue;
      }
      if (m.runner) {
        std::string failure = m.runner->failure();
        if (m.last_error == "config changed") failure = "its addresses changed in the config";
        if (!failure.empty()) {
          const absl::Duration wait =
              options_.restart_min +
              absl::Milliseconds(std::uniform_int_distribution<int64_t>(
                  0, absl::ToInt64Milliseconds(options_.restart_max - options_.restart_min))(rng));
          Event(it->first, "error",
                absl::StrCat("runner stopped (", failure, "); restarting in ",
                             absl::FormatDuration(wait)));
          metrics_.Add("autoscaling_agent_runner_restarts_total", {{"vm", it->first}});
          to_stop.push_back(std::move(m.runner));
          m.restart_at = now + wait;
          m.last_error.clear();
        }
      } else if (now >= m.restart_at && !m.owned) {
        to_start.push_back(m.config);
        m.restart_at = absl::InfiniteFuture();  // claimed by this round
      }
      ++it;
    }
  }
  to_stop.clear();  // Runner destructors stop and join
  for (const api::VmConfig& vm : to_start) {
    absl::StatusOr<std::unique_ptr<Runner>> runner = MakeRunner(vm, vm.qmp(), vm.monitor_address());
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(vm.name());
    if (it == vms_.end()) continue;  // removed meanwhile
    if (runner.ok()) {
      it->second.runner = *std::move(runner);
      it->second.last_error.clear();
      continue;
    }
    const std::string error(runner.status().message());
    if (error != it->second.last_error) Event(vm.name(), "error", "cannot start: " + error);
    it->second.last_error = error;
    it->second.restart_at = now + options_.restart_min;
  }
}

void Agent::OnMigrationOrder(const api::MigrationOrder& order) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || migrating_.contains(order.id())) return;
  if (order.source_node() != config_.node()) return;
  auto it = vms_.find(order.vm());
  if (it == vms_.end() || !it->second.runner) return;  // not (yet) ours; polled again later
  migrating_.insert(order.id());
  it->second.migrating = true;
  migrations_.emplace_back([this, order] { Migrate(order); });
}

void Agent::Migrate(api::MigrationOrder order) {
  const std::string& name = order.vm();
  Runner* runner = nullptr;
  api::VmConfig config;
  api::MigrationSettings settings;
  {
    absl::MutexLock lock(&mu_);
    settings = config_.migration();
    auto it = vms_.find(name);
    if (it != vms_.end()) {
      runner = it->second.runner.get();
      config = it->second.config;
    }
  }
  Event(name, "migration",
        absl::StrCat("migrating to node ", order.target_node(), " (order ", order.id(), ")"));
  std::unique_ptr<rpc::agent_peer::MigrationPeer> peer;
  bool prepared = false;
  auto report = [&](bool succeeded, const std::string& error) {
    api::MigrationResult r;
    r.set_order_id(order.id());
    r.set_vm(name);
    r.set_succeeded(succeeded);
    r.set_error(error);
    absl::Status s;
    for (int attempt = 0; attempt < 5; ++attempt) {
      s = scheduler_.ReportMigration(r).status();
      if (s.ok()) break;
      clock_.SleepFor(absl::Seconds(1));
    }
    if (!s.ok()) Event(name, "error", absl::StrCat("reporting the migration: ", s.message()));
  };
  auto fail = [&](const absl::Status& why) {
    Event(name, "error", absl::StrCat("migration failed: ", why.message()));
    metrics_.Add("autoscaling_agent_migrations_total",
                 {{"direction", "out"}, {"result", "failed"}});
    if (prepared && peer) {
      api::FinishIncomingRequest f;
      f.set_order_id(order.id());
      f.set_vm(name);
      f.set_succeeded(false);
      f.set_error(std::string(why.message()));
      (void)peer->FinishIncoming(f);
    }
    report(false, std::string(why.message()));
    if (runner != nullptr) runner->EndMigration();
    absl::MutexLock lock(&mu_);
    migrating_.erase(order.id());
    if (auto it = vms_.find(name); it != vms_.end()) it->second.migrating = false;
  };
  if (runner == nullptr) return fail(absl::NotFoundError("the VM is not managed here"));
  absl::StatusOr<neonvm::migration::MigrationOptions> options_or =
      MigrationOptionsFromProto(settings);  // checked when the config was loaded
  if (!options_or.ok()) return fail(options_or.status());
  neonvm::migration::MigrationOptions options = *options_or;
  options.allow_postcopy = config.allow_postcopy();
  options.timeout = options_.migration_timeout;
  if (absl::Status s = runner->BeginMigration(absl::Seconds(30)); !s.ok()) return fail(s);
  neonvm::qmp::QmpClient* qmp = runner->driver().qmp();
  if (qmp == nullptr) return fail(absl::FailedPreconditionError("the VM has no QMP connection"));
  const neonvm::launcher::VmSpec spec = SpecFromProto(config.spec());
  absl::StatusOr<neonvm::migration::Devices> devices =
      neonvm::migration::CaptureDevices(*qmp, spec);
  if (!devices.ok()) return fail(devices.status());
  absl::StatusOr<std::unique_ptr<rpc::agent_peer::MigrationPeer>> connected =
      connect_peer_(order.target_agent_address());
  if (!connected.ok()) return fail(connected.status());
  peer = *std::move(connected);
  api::PrepareIncomingRequest prepare;
  prepare.set_order_id(order.id());
  *prepare.mutable_vm() = config;
  for (const std::string& args : devices->cpu_device_add_args) {
    prepare.add_cpu_device_add_args(args);
  }
  if (devices->virtio_mem_requested_bytes) {
    prepare.set_has_virtio_mem(true);
    prepare.set_virtio_mem_requested_bytes(*devices->virtio_mem_requested_bytes);
  }
  *prepare.mutable_current() = Proto(runner->Status().current);
  absl::StatusOr<api::PrepareIncomingResponse> target = peer->PrepareIncoming(prepare);
  if (!target.ok()) return fail(target.status());
  prepared = true;
  absl::StatusOr<neonvm::migration::MigrationStats> stats =
      neonvm::migration::Send(*qmp, target->uri(), options);
  if (!stats.ok()) return fail(stats.status());

  // The VM runs on the target now: the scheduler moves it, then the target agent takes it over.
  report(true, "");
  api::FinishIncomingRequest finish;
  finish.set_order_id(order.id());
  finish.set_vm(name);
  finish.set_succeeded(true);
  absl::Status taken = peer->FinishIncoming(finish);
  if (!taken.ok()) {
    Event(name, "error",
          absl::StrCat("the target agent did not take the VM over: ", taken.message()));
  }
  (void)qmp->Execute("quit");  // the source QEMU's owner reaps it
  std::unique_ptr<Runner> gone;
  {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(name);
    if (it != vms_.end()) {
      gone = std::move(it->second.runner);
      vms_.erase(it);
    }
    departed_.insert(name);
    migrating_.erase(order.id());
  }
  gone.reset();
  metrics_.Forget({"vm", name});
  metrics_.Add("autoscaling_agent_migrations_total", {{"direction", "out"}, {"result", "ok"}});
  Event(name, "migration",
        absl::StrFormat("migrated to node %s in %s (downtime %s, %d MiB sent%s)",
                        order.target_node(), absl::FormatDuration(stats->total_time),
                        absl::FormatDuration(stats->downtime), stats->transferred_bytes >> 20,
                        stats->postcopy ? ", postcopy" : ""));
}

absl::StatusOr<api::PrepareIncomingResponse> Agent::PrepareIncoming(
    const api::PrepareIncomingRequest& request) {
  const api::VmConfig& config = request.vm();
  if (config.name().empty()) return absl::InvalidArgumentError("incoming VM without a name");
  neonvm::launcher::VmSpec spec = SpecFromProto(config.spec());
  RETURN_IF_ERROR(Annotate(neonvm::launcher::Validate(spec), "incoming VM " + config.name()));
  neonvm::migration::Devices devices;
  for (const std::string& args : request.cpu_device_add_args()) {
    devices.cpu_device_add_args.push_back(args);
  }
  if (request.has_virtio_mem())
    devices.virtio_mem_requested_bytes = request.virtio_mem_requested_bytes();
  ASSIGN_OR_RETURN(std::unique_ptr<neonvm::launcher::Vm> vm,
                   neonvm::migration::StartIncoming(spec, devices));
  ASSIGN_OR_RETURN(std::string uri, neonvm::migration::Listen(*vm, config.allow_postcopy()));
  ASSIGN_OR_RETURN(Resources current, core::ResourcesFromProto(request.current(), "current"));
  Event(config.name(), "migration",
        absl::StrCat("incoming migration prepared (QEMU ", vm->pid(), ", order ",
                     request.order_id(), ")"));
  absl::MutexLock lock(&mu_);
  incoming_[request.order_id()] = Incoming{config, current, std::move(vm)};
  api::PrepareIncomingResponse response;
  response.set_uri(uri);
  return response;
}

absl::Status Agent::FinishIncoming(const api::FinishIncomingRequest& request) {
  Incoming in;
  {
    absl::MutexLock lock(&mu_);
    auto it = incoming_.find(request.order_id());
    if (it == incoming_.end()) {
      return absl::NotFoundError(absl::StrCat("no incoming migration ", request.order_id()));
    }
    in = std::move(it->second);
    incoming_.erase(it);
  }
  const std::string name = in.config.name();
  if (!request.succeeded()) {
    (void)in.vm->Stop(absl::Seconds(2));
    Event(name, "migration", absl::StrCat("incoming migration abandoned: ", request.error()));
    metrics_.Add("autoscaling_agent_migrations_total", {{"direction", "in"}, {"result", "failed"}});
    return absl::OkStatus();
  }
  if (absl::Status s = neonvm::migration::AwaitIncoming(*in.vm, true, absl::Seconds(60)); !s.ok()) {
    (void)in.vm->Stop(absl::Seconds(2));
    return s;
  }
  api::VmConfig config = in.config;
  config.set_qmp("unix:" + in.vm->agent_qmp_path());
  config.set_monitor_address("");
  if (config.monitor_guest_port() > 0) {
    absl::StatusOr<int> port = in.vm->HostPort(config.monitor_guest_port());
    if (port.ok()) config.set_monitor_address(absl::StrCat("127.0.0.1:", *port));
  }
  // The spec now describes this QEMU (its size is what the source had).
  absl::StatusOr<std::unique_ptr<Runner>> runner =
      MakeRunner(config, config.qmp(), config.monitor_address());
  if (!runner.ok()) return Annotate(runner.status(), "taking over VM " + name);
  {
    absl::MutexLock lock(&mu_);
    departed_.erase(name);
    vms_[name] = Managed{config, *std::move(runner), absl::InfinitePast(), "", std::move(in.vm)};
  }
  metrics_.Add("autoscaling_agent_migrations_total", {{"direction", "in"}, {"result", "ok"}});
  Event(name, "migration", "migrated in: this node manages the VM now");
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

std::string Agent::StatusJson(uint64_t since) const {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto resources = [&](const char* key, const Resources& r) {
    w.Key(key);
    w.StartObject();
    w.Key("milliCpu");
    w.Int64(r.milli_cpu);
    w.Key("memoryBytes");
    w.Int64(r.memory_bytes);
    w.EndObject();
  };
  w.StartObject();
  {
    absl::MutexLock lock(&mu_);
    w.Key("node");
    w.String(config_.node().c_str());
  }
  std::map<std::string, std::string> serial;  // the consoles of the QEMUs this agent owns
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, m] : vms_) {
      if (m.owned) serial[name] = m.owned->serial_path();
    }
  }
  w.Key("vms");
  w.StartArray();
  for (const RunnerStatus& s : Statuses()) {
    w.StartObject();
    w.Key("vm");
    w.String(s.vm.c_str());
    if (auto it = serial.find(s.vm); it != serial.end()) {
      w.Key("serial");
      w.String(it->second.c_str());
    }
    resources("current", s.current);
    if (s.observed) resources("observed", *s.observed);
    if (s.permit) resources("permit", *s.permit);
    resources("desired", s.desired.resources);
    w.Key("goalCu");
    w.Uint(s.desired.goal.goal_cu);
    w.Key("decidedBy");
    w.String(core::SignalName(s.desired.decided_by));
    w.Key("monitor");
    w.Bool(s.monitor_connected);
    w.Key("migrating");
    w.Bool(s.migrating);
    w.Key("metricsStale");
    w.Bool(s.metrics_stale);
    if (s.metrics) {
      w.Key("loadAvg1m");
      w.Double(s.metrics->load_avg_1m());
      w.Key("memoryUsageBytes");
      w.Int64(s.metrics->memory_usage_bytes());
    }
    w.Key("upscaleRequests");
    w.Int64(s.upscale_requests);
    w.EndObject();
  }
  w.EndArray();
  w.Key("events");
  w.StartArray();
  for (const agent::Event& e : events_.Since(since)) {
    w.StartObject();
    w.Key("seq");
    w.Uint64(e.seq);
    w.Key("atUnixMs");
    w.Int64(absl::ToUnixMillis(e.at));
    w.Key("vm");
    w.String(e.vm.c_str());
    w.Key("kind");
    w.String(e.kind.c_str());
    w.Key("text");
    w.String(e.text.c_str());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace autoscale::agent
