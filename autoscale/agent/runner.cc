#include "autoscale/agent/runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "glog/logging.h"

namespace autoscale::agent {
namespace {

using core::Resources;

double Cu(const Resources& r, const Resources& cu) {
  return std::max(static_cast<double>(r.milli_cpu) / cu.milli_cpu,
                  static_cast<double>(r.memory_bytes) / cu.memory_bytes);
}

}  // namespace

Runner::Runner(RunnerOptions options, std::unique_ptr<VmDriver> driver,
               rpc::scheduler::SchedulerService& scheduler, MonitorConnector connect_monitor,
               EventLog& events, Metrics& metrics, Clock& clock)
    : options_(std::move(options)),
      driver_(std::move(driver)),
      scheduler_(scheduler),
      connect_monitor_(std::move(connect_monitor)),
      events_(events),
      metrics_(metrics),
      clock_(clock) {}

Runner::~Runner() { Stop(); }

absl::Status Runner::Start() {
  absl::StatusOr<Resources> current = driver_->Current();
  if (!current.ok()) {
    return absl::Status(current.status().code(),
                        absl::StrCat("VM ", options_.vm, ": ", current.status().message()));
  }
  {
    absl::MutexLock lock(&mu_);
    state_.emplace(options_.state, *current, options_.bounds);
  }
  Event(api::v1::EVENT_KIND_RUNNER_STARTED,
        absl::StrCat("managing the VM at ", current->ToString(), ", bounds ",
                     options_.bounds.min_cu, "..", options_.bounds.max_cu, " CU"));
  threads_.emplace_back([this] { Loop(); });
  threads_.emplace_back([this] { SchedulerExecutor(); });
  threads_.emplace_back([this] { VmExecutor(); });
  threads_.emplace_back([this] { MonitorExecutor(); });
  if (!options_.monitor_address.empty()) threads_.emplace_back([this] { MonitorConnection(); });
  return absl::OkStatus();
}

void Runner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  std::shared_ptr<rpc::monitor::MonitorClient> monitor;
  {
    absl::MutexLock lock(&mu_);
    monitor = std::move(monitor_);
  }
  monitor.reset();  // outside the lock: its reader thread may be waiting for it
}

bool Runner::ChangedSince(uint64_t generation) const {
  return stopping_ || state_->generation() != generation;
}

void Runner::Event(api::v1::EventKind kind, const std::string& text,
                   std::optional<absl::Duration> duration) {
  events_.Add(clock_.Now(), options_.vm, kind, text, duration);
}

bool Runner::NextOperation(std::optional<core::Operation> Runner::*slot, core::Operation& op,
                           const std::function<bool()>& usable) {
  absl::MutexLock lock(&mu_);
  std::optional<core::Operation>& work = this->*slot;
  while (true) {
    auto ready = [this, &work]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || work.has_value(); };
    mu_.Await(absl::Condition(&ready));
    if (stopping_) return false;
    op = *std::exchange(work, std::nullopt);
    if (usable && !usable()) continue;
    if (core::Start(*state_, clock_.Now(), op)) return true;
    // Stale: the state changed since the advice; the loop advises afresh.
  }
}

void Runner::Loop() {
  mu_.Lock();
  while (!stopping_) {
    const core::Advice a = core::Advise(*state_, clock_.Now());
    if (a.operation) {
      switch (a.operation->kind) {
        case core::OperationKind::kSchedulerRequest:
          scheduler_work_ = *a.operation;
          break;
        case core::OperationKind::kVmResize:
          vm_work_ = *a.operation;
          break;
        case core::OperationKind::kMonitorUpscale:
        case core::OperationKind::kMonitorDownscale:
          monitor_work_ = *a.operation;
          break;
      }
    }
    PublishMetrics();
    const uint64_t generation = state_->generation();
    const absl::Duration sleep = std::min(a.wait.value_or(options_.max_sleep), options_.max_sleep);
    auto changed = [this, generation]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ChangedSince(generation); };
    mu_.AwaitWithTimeout(absl::Condition(&changed), std::max(sleep, absl::Milliseconds(1)));
  }
  mu_.Unlock();
}

void Runner::PublishMetrics() {
  const core::Desired d = state_->DesiredResources(clock_.Now());
  const Resources& cu = options_.state.compute_unit;
  const Metrics::Labels vm = Vm();
  metrics_.Set("autoscaling_agent_vm_target_cu", vm, Cu(d.resources, cu));
  // As the reference names it: the goal (total) and each part of it, before bounds.
  auto part = [&](const char* component, const std::optional<double>& v) {
    Metrics::Labels l = vm;
    l.push_back({"component", component});
    metrics_.Set("autoscaling_vm_desired_cu", l, v.value_or(0));
  };
  part("total", d.goal.goal_cu);
  part("cpu", d.goal.cpu_cu);
  part("mem", d.goal.memory_cu);
  part("lfc", d.goal.lfc_cu);
  const Resources current = state_->current();
  metrics_.Set("autoscaling_agent_vm_cpu_milli", {{"vm", options_.vm}, {"value", "current"}},
               current.milli_cpu);
  metrics_.Set("autoscaling_agent_vm_memory_bytes", {{"vm", options_.vm}, {"value", "current"}},
               current.memory_bytes);
  if (auto p = state_->permit()) {
    metrics_.Set("autoscaling_agent_vm_cpu_milli", {{"vm", options_.vm}, {"value", "permit"}},
                 p->milli_cpu);
    metrics_.Set("autoscaling_agent_vm_memory_bytes", {{"vm", options_.vm}, {"value", "permit"}},
                 p->memory_bytes);
  }
}

void Runner::SchedulerExecutor() {
  const Resources& cu = options_.state.compute_unit;
  core::Operation op;
  while (NextOperation(&Runner::scheduler_work_, op)) {
    api::v1::PermitRequest request;
    request.set_node(options_.node);
    request.set_vm(options_.vm);
    request.mutable_compute_unit()->set_milli_cpu(cu.milli_cpu);
    request.mutable_compute_unit()->set_memory_bytes(cu.memory_bytes);
    *request.mutable_resources() = core::ToProto(op.target);
    if (op.last_permit) *request.mutable_last_permit() = core::ToProto(*op.last_permit);
    if (op.metrics) {
      request.mutable_metrics()->set_load_avg_1m(op.metrics->load_avg_1m);
      request.mutable_metrics()->set_load_avg_5m(op.metrics->load_avg_5m);
      request.mutable_metrics()->set_memory_usage_bytes(
          static_cast<int64_t>(op.metrics->memory_usage_bytes));
    }
    const absl::Time start = clock_.Now();
    absl::StatusOr<api::v1::PermitResponse> response = AskScheduler(request);
    metrics_.Observe("autoscaling_agent_scheduler_latency_seconds", {},
                     absl::ToDoubleSeconds(clock_.Now() - start), Metrics::kLatencyBuckets);
    std::optional<api::v1::MigrationOrder> order;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = clock_.Now();
      if (!response.ok()) {
        (void)core::Finish(*state_, now, op.kind, core::OperationResult::Failed());
        metrics_.Add("autoscaling_agent_scheduler_requests_total", {{"result", "failed"}});
        Event(api::v1::EVENT_KIND_SCHEDULER_REQUEST_FAILED,
              absl::StrCat("scheduler request for ", op.target.ToString(),
                           " failed: ", response.status().message()));
        continue;
      }
      const Resources permit = {response->permit().milli_cpu(), response->permit().memory_bytes()};
      const std::optional<Resources> before = state_->permit();
      absl::Status valid =
          core::Finish(*state_, now, op.kind, core::OperationResult::Permit(permit));
      if (!valid.ok()) {
        metrics_.Add("autoscaling_agent_scheduler_requests_total", {{"result", "invalid"}});
        Event(api::v1::EVENT_KIND_PERMIT_REFUSED, absl::StrCat("scheduler: ", valid.message()));
        continue;
      }
      metrics_.Add("autoscaling_agent_scheduler_requests_total", {{"result", "ok"}});
      switch (core::ClassifyGrant(op.current, op.target, permit)) {
        case core::Grant::kPartial:
          metrics_.Add("autoscaling_agent_scaling_partial_approvals_total", Vm());
          Event(api::v1::EVENT_KIND_PARTIAL_GRANT,
                absl::StrCat("scheduler granted ", permit.ToString(), " of ", op.target.ToString(),
                             " (partial grant)"));
          break;
        case core::Grant::kDenied:
          metrics_.Add("autoscaling_agent_scaling_full_denials_total", Vm());
          Event(api::v1::EVENT_KIND_DENIED,
                absl::StrCat("scheduler granted ", permit.ToString(), " of ", op.target.ToString(),
                             " (node full)"));
          break;
        case core::Grant::kFull:
        case core::Grant::kNoGrowth:
          if (!before || permit != *before) {
            Event(api::v1::EVENT_KIND_PERMIT, absl::StrCat("scheduler permit ", permit.ToString()));
          }
          break;
      }
      if (response->has_migration()) order = response->migration();
    }
    if (order && options_.on_migration_order) options_.on_migration_order(*order);
  }
}

absl::StatusOr<api::v1::PermitResponse> Runner::AskScheduler(
    const api::v1::PermitRequest& request) {
  // The answer may come after the wait gave up (or after the runner is gone): it lands here,
  // shared, and is dropped. The scheduler may then hold a larger permit than this runner knows
  // of; that only over-reserves, until the next request says what the VM has.
  struct Answer {
    absl::Mutex mu;
    std::optional<absl::StatusOr<api::v1::PermitResponse>> value ABSL_GUARDED_BY(mu);
  };
  auto answer = std::make_shared<Answer>();
  absl::Duration timeout;
  {
    absl::MutexLock lock(&mu_);
    timeout = state_->config().timings.scheduler_request_timeout;
  }
  const absl::Time deadline = clock_.Now() + timeout;
  scheduler_.RequestAsync(request, [answer](absl::StatusOr<api::v1::PermitResponse> r) {
    absl::MutexLock lock(&answer->mu);
    answer->value = std::move(r);
  });
  while (true) {
    // Clock time bounds the wait; real-time slices of it let a test's clock and Stop be seen.
    const absl::Duration slice =
        std::max(std::min(deadline - clock_.Now(), options_.max_sleep), absl::Milliseconds(1));
    {
      absl::MutexLock lock(&answer->mu);
      auto answered = [&answer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(answer->mu) {
        return answer->value.has_value();
      };
      answer->mu.AwaitWithTimeout(absl::Condition(&answered), slice);
      if (answer->value) return *std::move(answer->value);
    }
    if (clock_.Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no answer within ", absl::FormatDuration(timeout)));
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("the runner stops");
  }
}

void Runner::ProbeVm() {
  absl::StatusOr<Resources> now = driver_->Current();
  absl::MutexLock lock(&mu_);
  if (now.ok()) {
    observed_ = *now;
    return;
  }
  observed_.reset();
  if (now.status().code() == absl::StatusCode::kUnavailable && failure_.empty()) {
    failure_ = absl::StrCat("the VM cannot be reached: ", now.status().message());
  }
}

void Runner::VmExecutor() {
  while (true) {
    core::Operation op;
    bool work = false;
    absl::Duration timeout;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || vm_work_.has_value();
      };
      work = mu_.AwaitWithTimeout(absl::Condition(&ready), options_.probe_interval);
      if (stopping_) return;
      if (work) {
        op = *std::exchange(vm_work_, std::nullopt);
        if (!core::Start(*state_, clock_.Now(), op)) continue;  // stale advice
        timeout = state_->config().timings.vm_request_timeout;
      }
    }
    if (!work) {  // idle: look at the VM
      ProbeVm();
      continue;
    }
    const absl::Time start = clock_.Now();
    absl::StatusOr<Resources> reached = driver_->Resize(op.target, timeout);
    const absl::Duration took = clock_.Now() - start;
    metrics_.Observe("autoscaling_agent_vm_resize_latency_seconds", {}, absl::ToDoubleSeconds(took),
                     Metrics::kLatencyBuckets);
    std::optional<Resources> now_at;
    if (!reached.ok()) {
      absl::StatusOr<Resources> current = driver_->Current();
      if (current.ok()) now_at = *current;
    }
    absl::MutexLock lock(&mu_);
    if (reached.ok()) {
      observed_ = *reached;
      (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Resized(*reached));
      metrics_.Add("autoscaling_agent_vm_resizes_total", {{"vm", options_.vm}, {"result", "ok"}});
      Event(api::v1::EVENT_KIND_RESIZED,
            absl::StrCat("VM resized ", op.current.ToString(), " -> ", reached->ToString(), " in ",
                         absl::FormatDuration(took)),
            took);
      continue;
    }
    (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Failed(now_at));
    metrics_.Add("autoscaling_agent_vm_resizes_total", {{"vm", options_.vm}, {"result", "failed"}});
    Event(api::v1::EVENT_KIND_RESIZE_FAILED, absl::StrCat("VM resize to ", op.target.ToString(),
                                                          " failed: ", reached.status().message()));
    if (reached.status().code() == absl::StatusCode::kUnavailable) {
      failure_ = absl::StrCat("the VM cannot be reached: ", reached.status().message());
    }
  }
}

void Runner::MonitorExecutor() {
  absl::Duration timeout;
  core::Operation op;
  std::shared_ptr<rpc::monitor::MonitorClient> monitor;
  auto connected = [this, &monitor, &timeout]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    monitor = monitor_;
    timeout = state_->config().timings.monitor_response_timeout;  // a reload may change it
    return monitor != nullptr;
  };
  while (NextOperation(&Runner::monitor_work_, op, connected)) {
    const api::v1::Resources target = core::ToProto(op.target);
    if (op.kind == core::OperationKind::kMonitorUpscale) {
      absl::Status s = monitor->NotifyUpscale(target, timeout);
      monitor.reset();
      absl::MutexLock lock(&mu_);
      if (s.ok()) {
        (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Done());
        Event(api::v1::EVENT_KIND_MONITOR_NOTIFIED,
              absl::StrCat("monitor told of ", op.target.ToString()));
      } else {
        (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Failed());
        Event(api::v1::EVENT_KIND_MONITOR_NOTIFY_FAILED,
              absl::StrCat("upscale notification failed: ", s.message()));
      }
      continue;
    }
    absl::StatusOr<api::v1::DownscaleResult> result = monitor->RequestDownscale(target, timeout);
    monitor.reset();
    absl::MutexLock lock(&mu_);
    if (!result.ok()) {
      (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Failed());
      Event(api::v1::EVENT_KIND_DOWNSCALE_REQUEST_FAILED,
            absl::StrCat("downscale request failed: ", result.status().message()));
    } else if (result->ok()) {
      (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Done());
      Event(api::v1::EVENT_KIND_DOWNSCALE_APPROVED,
            absl::StrCat("monitor approved ", op.target.ToString(), ": ", result->status()));
    } else {
      (void)core::Finish(*state_, clock_.Now(), op.kind, core::OperationResult::Denied());
      Event(api::v1::EVENT_KIND_DOWNSCALE_DENIED,
            absl::StrCat("monitor denied ", op.target.ToString(), ": ", result->status()));
    }
  }
}

rpc::monitor::MonitorClient::Callbacks Runner::MonitorCallbacks(uint64_t generation) {
  // Each connection's callbacks carry its generation: what an older connection's client says
  // (its metrics, or its end, which it reports also when it is destroyed late, by an executor
  // that held it during a call) is not taken for the current connection's.
  return {
      .on_metrics =
          [this, generation](const api::v1::Metrics& m) {
            absl::MutexLock lock(&mu_);
            if (generation != monitor_generation_) return;
            absl::StatusOr<core::SystemMetrics> system = core::SystemMetricsFromProto(m);
            absl::StatusOr<core::LfcMetrics> lfc = core::LfcMetricsFromProto(m);
            if (!system.ok() || !lfc.ok()) {
              // Refused at the edge: a NaN would make every goal (and the status page) NaN.
              Event(api::v1::EVENT_KIND_METRICS_REFUSED,
                    absl::StrCat("metrics refused: ",
                                 (system.ok() ? lfc.status() : system.status()).message()));
              return;
            }
            const absl::Time now = clock_.Now();
            state_->UpdateSystemMetrics(now, *system);
            if (!lfc->working_set_pages.empty()) state_->UpdateLfcMetrics(now, *lfc);
            last_metrics_ = m;
          },
      .on_upscale_request =
          [this, generation](const api::v1::UpscaleRequest& r) {
            absl::MutexLock lock(&mu_);
            if (generation != monitor_generation_) return;
            if (connected_generation_ == generation) {
              state_->MonitorUpscaleRequested(clock_.Now());
            } else {
              // Sent as the connection came up, before the state knows of it: MonitorConnected
              // would wipe it; it is applied right after.
              early_upscale_ = clock_.Now();
            }
            ++upscale_requests_;
            Event(api::v1::EVENT_KIND_UPSCALE_REQUESTED,
                  absl::StrCat("monitor asks for memory: usage ", r.usage_bytes() >> 20,
                               " MiB passed the threshold ", r.threshold_bytes() >> 20, " MiB"));
          },
      .on_closed =
          [this, generation](const absl::Status&) {
            absl::MutexLock lock(&mu_);
            if (generation == monitor_generation_) monitor_closed_ = true;
          },
  };
}

void Runner::MonitorConnection() {
  bool reported_failure = false;
  while (true) {
    uint64_t generation;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      generation = ++monitor_generation_;
      monitor_closed_ = false;
      early_upscale_.reset();
    }
    absl::StatusOr<std::unique_ptr<rpc::monitor::MonitorClient>> client = connect_monitor_(
        options_.monitor_address, {.vm = options_.vm, .token = options_.agent_token},
        MonitorCallbacks(generation), options_.monitor_connect_timeout);
    if (client.ok()) {
      reported_failure = false;
      std::shared_ptr<rpc::monitor::MonitorClient> monitor = *std::move(client);
      {
        absl::MutexLock lock(&mu_);
        monitor_ = monitor;
        connected_generation_ = generation;
        state_->MonitorConnected(clock_.Now());
        if (early_upscale_) state_->MonitorUpscaleRequested(*std::exchange(early_upscale_, {}));
      }
      Event(api::v1::EVENT_KIND_MONITOR_CONNECTED,
            "monitor connected at " + options_.monitor_address);
      absl::Time last_healthy = clock_.Now();
      while (true) {
        {
          absl::MutexLock lock(&mu_);
          auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return stopping_ || monitor_closed_;
          };
          mu_.AwaitWithTimeout(absl::Condition(&done), options_.monitor_health_interval);
          if (stopping_ || monitor_closed_) break;
        }
        absl::Duration timeout;
        {
          absl::MutexLock lock(&mu_);
          timeout = state_->config().timings.monitor_response_timeout;
        }
        if (monitor->HealthCheck(timeout).ok()) {
          last_healthy = clock_.Now();
        } else if (clock_.Now() - last_healthy > options_.monitor_unhealthy_after) {
          Event(api::v1::EVENT_KIND_MONITOR_UNHEALTHY,
                "monitor health checks failing; reconnecting");
          break;
        }
      }
      {
        absl::MutexLock lock(&mu_);
        monitor_.reset();
        connected_generation_ = 0;
        state_->MonitorDisconnected();
        // The metrics came over the stream: keep them for growth, never shrink on them.
        state_->MarkMetricsStale();
      }
      monitor.reset();  // outside the lock: joins its reader thread
      Event(api::v1::EVENT_KIND_MONITOR_DISCONNECTED,
            "monitor disconnected; no downscale until it is back");
    } else if (client.status().code() == absl::StatusCode::kPermissionDenied) {
      // Not this VM's monitor (its certificate names another), or it refused us (a wrong token):
      // counted and logged at every attempt, an attack or a misconfiguration to look at.
      metrics_.Add("autoscaling_agent_monitor_refused_total", {{"vm", options_.vm}});
      LOG(WARNING) << "agent: VM " << options_.vm << ": " << client.status();
      if (!reported_failure) {
        Event(api::v1::EVENT_KIND_MONITOR_UNREACHABLE,
              absl::StrCat("monitor link refused: ", client.status().message()));
        reported_failure = true;
      }
    } else if (!reported_failure) {
      Event(api::v1::EVENT_KIND_MONITOR_UNREACHABLE,
            absl::StrCat("cannot reach the monitor: ", client.status().message()));
      reported_failure = true;
    }
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), options_.monitor_retry);
  }
}

RunnerStatus Runner::Status() const {
  absl::MutexLock lock(&mu_);
  RunnerStatus s;
  s.vm = options_.vm;
  if (!state_) return s;
  s.current = state_->current();
  s.observed = observed_;
  s.permit = state_->permit();
  s.desired = state_->DesiredResources(clock_.Now());
  s.monitor_connected = monitor_ != nullptr;
  s.migrating = state_->migrating();
  s.metrics_stale = state_->metrics_stale();
  s.metrics = last_metrics_;
  s.upscale_requests = upscale_requests_;
  return s;
}

void Runner::Update(core::Bounds bounds, const core::ScalingConfig& scaling,
                    const core::Timings& timings) {
  absl::MutexLock lock(&mu_);
  if (state_->bounds() != bounds) {
    state_->UpdateBounds(bounds);
    Event(api::v1::EVENT_KIND_VM_CONFIG_CHANGED,
          absl::StrCat("bounds now ", bounds.min_cu, "..", bounds.max_cu, " CU"));
  }
  state_->UpdateScalingConfig(scaling);
  state_->UpdateTimings(timings);
}

absl::Status Runner::BeginMigration(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  state_->SetMigrating(true);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !state_->vm_resize_in_flight().has_value();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&idle), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("VM ", options_.vm, ": a resize did not end within ",
                     absl::FormatDuration(timeout), " before the migration"));
  }
  return absl::OkStatus();
}

void Runner::EndMigration() {
  absl::MutexLock lock(&mu_);
  state_->SetMigrating(false);
}

std::string Runner::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

}  // namespace autoscale::agent
