// Liveness of the agent's runners against the real scheduler (ledger and request handler in
// process): several VMs on one node, each driven as its runner drives it (core/executor.h: the
// runner's executors in one thread, so the test holds the clock and never sleeps), first under
// random failures of the scheduler (refused, or granted with the answer lost), the VM (failing
// with or without moving part of the way) and the monitor (failing, denying) and random bounds
// changes (a config reload: the runner takes them at once, the scheduler when the agent reaches
// it), then with the failures stopped. Seeded, so a failure replays (the seed is in the message).
//
// Checked after every step (safety): no VM uses more than the ledger holds for it, and the
// ledger's invariants hold (nothing booked past the node). Checked at the end (liveness): once
// failures stop, every VM reaches the size its runner wants (the node has room for all) and the
// ledger holds exactly that: nothing granted in a lost answer stays booked, nothing is missing.
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/core/executor.h"
#include "autoscale/core/state.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/scheduler/request_handler.h"
#include "gtest/gtest.h"

namespace autoscale::agent {
namespace {

using core::OperationKind;
using core::OperationResult;
using core::Resources;

constexpr Resources kCu{1000, kGiB};
constexpr int kVms = 4;
constexpr int kMaxCu = 4;

class Liveness {
 public:
  explicit Liveness(uint64_t seed)
      : rng_(seed), ledger_({.placement = {.randomize = false}}), handler_(ledger_, kCu) {
    api::v1::RegisterNodeRequest node;
    node.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    node.set_node("n1");
    *node.mutable_total() = core::ToProto(kCu * (kVms * kMaxCu));  // room for every maximum
    EXPECT_TRUE(handler_.RegisterNode(node).ok());
    for (int i = 0; i < kVms; ++i) {
      const std::string name = absl::StrCat("vm", i);
      const core::Bounds bounds{static_cast<uint32_t>(Uniform(1, 2)), kMaxCu};
      api::v1::PlaceVmRequest place;
      place.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
      place.set_vm(name);
      place.set_node("n1");
      place.mutable_bounds()->set_min_cu(bounds.min_cu);
      place.mutable_bounds()->set_max_cu(bounds.max_cu);
      EXPECT_TRUE(handler_.PlaceVm(place).ok());
      Vm& vm = vms_[name];
      vm.size = kCu * bounds.min_cu;
      vm.state.emplace(core::StateConfig{kCu, core::ScalingConfig{}, core::Timings{}}, vm.size,
                       bounds);
      vm.state->MonitorConnected(now_);
    }
  }

  // Random metrics, operations and failures for `steps` steps, then none: the metrics stay and
  // every operation succeeds.
  void Run(int failing_steps, int calm_steps) {
    failures_ = true;
    for (int i = 0; i < failing_steps; ++i) {
      if (Chance(0.1)) SendRandomMetrics();
      if (Chance(0.05)) ChangeRandomBounds();
      Step(absl::StrCat("failing step ", i));
      if (::testing::Test::HasFailure()) return;
    }
    failures_ = false;
    for (int i = 0; i < calm_steps; ++i) {
      Step(absl::StrCat("calm step ", i));
      if (::testing::Test::HasFailure()) return;
    }
  }

  // Each VM at its desired size, booked exactly so in the ledger.
  void ExpectConverged() {
    for (auto& [name, vm] : vms_) {
      const Resources desired = vm.state->DesiredResources(now_).resources;
      EXPECT_EQ(vm.size.ToString(), desired.ToString())
          << name << " did not reach its desired size" << Trace(vm);
      EXPECT_EQ(Permit(name).ToString(), vm.size.ToString())
          << name << ": the ledger holds other than the VM uses" << Trace(vm);
    }
  }

 private:
  struct Vm {
    std::optional<core::State> state;
    Resources size;  // what the VM has
    // Bounds from a config change the scheduler has not taken yet (the agent sends them again
    // until it does).
    std::optional<core::Bounds> bounds_to_send;
    std::vector<std::string> trace;
  };

  static std::string Trace(const Vm& vm) {
    std::string out;
    const size_t from = vm.trace.size() > 12 ? vm.trace.size() - 12 : 0;
    for (size_t i = from; i < vm.trace.size(); ++i) absl::StrAppend(&out, "\n  ", vm.trace[i]);
    return out;
  }

  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  // Whether an operation fails (only while failures are on).
  bool Fails() { return failures_ && Chance(0.3); }

  void SendRandomMetrics() {
    for (auto& [name, vm] : vms_) {
      const double load = Uniform(0, 50) / 10.0;
      vm.state->UpdateSystemMetrics(now_, {.load_avg_1m = load,
                                           .load_avg_5m = load,
                                           .memory_usage_bytes = Uniform(0, 6) * 0.5 * kGiB,
                                           .memory_cached_bytes = 0});
    }
  }

  // A config reload changes a VM's bounds: the runner takes them at once, the scheduler when it
  // is reached.
  void ChangeRandomBounds() {
    auto it = vms_.begin();
    std::advance(it, Uniform(0, kVms - 1));
    const uint32_t min_cu = Uniform(1, 2);
    const core::Bounds bounds{min_cu, static_cast<uint32_t>(Uniform(min_cu, kMaxCu))};
    it->second.state->UpdateBounds(bounds);
    it->second.bounds_to_send = bounds;
  }

  void SendBounds(const std::string& name, Vm& vm) {
    if (!vm.bounds_to_send || Fails()) return;
    api::v1::UpdateVmBoundsRequest r;
    r.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    r.set_vm(name);
    r.set_node("n1");
    r.mutable_bounds()->set_min_cu(vm.bounds_to_send->min_cu);
    r.mutable_bounds()->set_max_cu(vm.bounds_to_send->max_cu);
    absl::StatusOr<api::v1::UpdateVmBoundsResponse> sent = handler_.UpdateVmBounds(r);
    EXPECT_TRUE(sent.ok()) << sent.status();
    vm.bounds_to_send.reset();
  }

  Resources Permit(const std::string& vm) {
    absl::StatusOr<api::v1::ListVmsResponse> list = handler_.ListVms([] {
      api::v1::ListRequest r;
      r.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
      return r;
    }());
    EXPECT_TRUE(list.ok()) << list.status();
    if (!list.ok()) return {};
    for (const api::v1::VmState& v : list->vms()) {
      if (v.vm() == vm) return {v.permit().milli_cpu(), v.permit().memory_bytes()};
    }
    return {};
  }

  OperationResult AskScheduler(const std::string& name, const core::Operation& op) {
    if (Fails() && Chance(0.5)) return OperationResult::Failed();  // never reached it
    api::v1::PermitRequest r;
    r.set_protocol_version(api::v1::PROTOCOL_VERSION_1);
    r.set_node("n1");
    r.set_vm(name);
    r.mutable_compute_unit()->set_milli_cpu(kCu.milli_cpu);
    r.mutable_compute_unit()->set_memory_bytes(kCu.memory_bytes);
    *r.mutable_resources() = core::ToProto(op.target);
    if (op.last_permit) *r.mutable_last_permit() = core::ToProto(*op.last_permit);
    absl::StatusOr<api::v1::PermitResponse> answer = handler_.Request(r);
    if (!answer.ok() || Fails()) return OperationResult::Failed();  // the answer is lost
    return OperationResult::Permit({answer->permit().milli_cpu(), answer->permit().memory_bytes()});
  }

  OperationResult Resize(Vm& vm, const core::Operation& op) {
    if (Fails()) {
      // Part of the way (the vCPUs moved, the memory did not), or not at all.
      if (Chance(0.5)) vm.size = {op.target.milli_cpu, vm.size.memory_bytes};
      return OperationResult::Failed(vm.size);
    }
    vm.size = op.target;
    return OperationResult::Resized(vm.size);
  }

  OperationResult AskMonitor(const core::Operation& op) {
    if (Fails()) return OperationResult::Failed();
    if (op.kind == OperationKind::kMonitorDownscale && failures_ && Chance(0.3)) {
      return OperationResult::Denied();
    }
    return OperationResult::Done();
  }

  void Step(const std::string& context) {
    for (auto& [name, vm] : vms_) {
      SendBounds(name, vm);
      std::vector<core::Operation> ops;
      core::StartAll(*vm.state, now_, [&](const core::Operation& op) { ops.push_back(op); });
      for (const core::Operation& op : ops) {
        OperationResult result;
        switch (op.kind) {
          case OperationKind::kSchedulerRequest:
            result = AskScheduler(name, op);
            break;
          case OperationKind::kVmResize:
            result = Resize(vm, op);
            break;
          case OperationKind::kMonitorUpscale:
          case OperationKind::kMonitorDownscale:
            result = AskMonitor(op);
            break;
        }
        const absl::Status finished = core::Finish(*vm.state, now_, op.kind, result);
        vm.trace.push_back(
            absl::StrCat(context, ": ", core::OperationKindName(op.kind), " ",
                         op.current.ToString(), " -> ", op.target.ToString(), ": ",
                         result.kind == OperationResult::Kind::kDone     ? "done"
                         : result.kind == OperationResult::Kind::kDenied ? "denied"
                                                                         : "failed",
                         result.resources ? " " + result.resources->ToString() : "",
                         finished.ok() ? "" : absl::StrCat(" (", finished.message(), ")"), "; VM ",
                         vm.size.ToString()));
      }
      // Safety: the VM never uses more than the ledger holds for it.
      const Resources permit = Permit(name);
      ASSERT_TRUE(vm.size.FitsIn(permit))
          << context << ": " << name << " has " << vm.size.ToString() << " but the ledger holds "
          << permit.ToString() << Trace(vm);
    }
    absl::Status books = ledger_.CheckInvariants();
    ASSERT_TRUE(books.ok()) << context << ": " << books;
    now_ += absl::Milliseconds(Uniform(0, 2000));
  }

  std::mt19937_64 rng_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  bool failures_ = false;
  ledger::Ledger ledger_;
  scheduler::RequestHandler handler_;
  std::map<std::string, Vm> vms_;
};

TEST(LivenessProperty, AfterFailuresStopEveryVmReachesItsSizeAndTheLedgerHoldsExactlyThat) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    Liveness run(seed);
    // 400 calm steps of up to 2 s each: well past every retry and the 15 s periodic request.
    run.Run(/*failing_steps=*/300, /*calm_steps=*/400);
    if (HasFailure()) return;
    run.ExpectConverged();
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace autoscale::agent
