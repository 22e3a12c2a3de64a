#include "autoscale/scheduler/ha_scheduler.h"

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/prometheus.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::scheduler {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr auto kStep = std::chrono::milliseconds(20);
// Pauses after a failed candidacy or takeover before the next attempt.
constexpr auto kCampaignRetry = std::chrono::milliseconds(500);
constexpr auto kTakeoverRetry = std::chrono::milliseconds(200);

}  // namespace

absl::StatusOr<std::unique_ptr<HaScheduler>> HaScheduler::Start(HaSchedulerOptions options) {
  RETURN_IF_ERROR(ValidateOptions(options.scheduler));
  if (options.advertise.empty()) {
    return absl::InvalidArgumentError(
        "HA scheduler: an address to advertise (where clients reach it) is required");
  }
  if (options.lease_ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat("HA scheduler: lease TTL must be >= 1s, got ",
                                                   absl::FormatDuration(options.lease_ttl)));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ledger::etcd::EtcdClient> etcd,
                   ledger::etcd::EtcdClient::Connect(options.etcd));
  return std::unique_ptr<HaScheduler>(new HaScheduler(std::move(options), std::move(etcd)));
}

HaScheduler::HaScheduler(HaSchedulerOptions options, std::shared_ptr<ledger::etcd::EtcdClient> etcd)
    : options_(std::move(options)), etcd_(std::move(etcd)), keys_(options_.prefix) {}

HaScheduler::~HaScheduler() {
  if (owned_active_ != nullptr) StepDown(absl::CancelledError("the scheduler is shutting down"));
  follower_.reset();
  election_.reset();
}

HaScheduler::Active* HaScheduler::Enter() {
  inflight_.fetch_add(1);
  Active* a = active_.load();
  if (a == nullptr || !a->election->LeaseValid()) {
    inflight_.fetch_sub(1);
    return nullptr;
  }
  return a;
}

absl::StatusOr<ledger::VmInfo> HaScheduler::GetVm(const std::string& vm) {
  Active* a = Enter();
  if (a == nullptr) return NotLeader();
  absl::StatusOr<ledger::VmInfo> info = a->scheduler->ledger().GetVm(vm);
  Exit();
  return info;
}

absl::Status HaScheduler::NotLeader() const {
  const std::string& me = options_.advertise;
  std::string leader;
  {
    absl::MutexLock l(&mu_);
    leader = leader_;
  }
  if (active_.load() != nullptr) {
    return rpc::scheduler::NotLeaderError(
        absl::StrCat("scheduler ", me,
                     " leads but has not renewed its etcd lease in time; it answers once it has "
                     "(or another scheduler takes over)"),
        "");
  }
  if (leader.empty()) {
    return rpc::scheduler::NotLeaderError(
        absl::StrCat("scheduler ", me,
                     " is a standby and knows of no leader (an election is under "
                     "way)"),
        "");
  }
  if (leader == me) {
    return rpc::scheduler::NotLeaderError(absl::StrCat("scheduler ", me, " is taking over"), "");
  }
  return rpc::scheduler::NotLeaderError(
      absl::StrCat("scheduler ", me, " is a standby; the leader is ", leader), leader);
}

std::string HaScheduler::leader() const {
  absl::MutexLock l(&mu_);
  return leader_;
}

HaScheduler::Counters HaScheduler::counters() const {
  absl::MutexLock l(&mu_);
  return counters_;
}

void HaScheduler::Run(absl::Duration interval, const std::function<bool(absl::Duration)>& wait) {
  const auto every = std::chrono::nanoseconds(absl::ToInt64Nanoseconds(interval));
  SteadyClock::time_point next_round = SteadyClock::now() + every;
  for (;;) {
    const bool round = SteadyClock::now() >= next_round;
    if (round) next_round = SteadyClock::now() + every;
    Step(round);
    const auto slice = std::clamp<SteadyClock::duration>(next_round - SteadyClock::now(),
                                                         SteadyClock::duration::zero(), kStep);
    if (wait(absl::FromChrono(slice))) return;
  }
}

void HaScheduler::Step(bool maintenance) {
  const SteadyClock::time_point now = SteadyClock::now();
  if (owned_active_ == nullptr) {
    if (election_ != nullptr && election_->lost()) election_.reset();
    if (election_ == nullptr && now >= next_campaign_) {
      absl::StatusOr<std::unique_ptr<Election>> e = Election::Start(
          etcd_, {.prefix = options_.prefix,
                  .value = options_.advertise,
                  .lease_ttl = options_.lease_ttl,
                  .on_lost = [this] {
                    // Waiters on the store hear at once rather than when the
                    // next write is refused; Step then steps down.
                    WithActive([](Active& a) {
                      a.store->Close(absl::UnavailableError("the scheduler lost its etcd lease"));
                    });
                  }});
      if (e.ok()) {
        election_ = *std::move(e);
      } else {
        LOG_EVERY_N(WARNING, 10) << "joining the election: " << e.status();
        next_campaign_ = now + kCampaignRetry;
      }
    }
    if (follower_ == nullptr) follower_ = ledger::etcd::EtcdFollower::Start(etcd_, keys_);
    if (election_ != nullptr) {
      absl::MutexLock l(&mu_);
      leader_ = election_->leader();
    }
    if (election_ != nullptr && election_->leading() && now >= next_takeover_) {
      if (absl::Status s = Takeover(); !s.ok()) {
        LOG(ERROR) << "scheduler " << options_.advertise
                   << " was elected but cannot take over: " << s;
        next_takeover_ = now + kTakeoverRetry;
      }
    }
    return;
  }
  absl::Status why;
  if (election_->lost()) {
    why = absl::UnavailableError("its etcd lease was lost");
  } else if (absl::Status s = owned_active_->store->stopped(); !s.ok()) {
    // Fenced off or closed: it will never write again. (etcd out of reach is not a reason: the
    // store retries, and the lease decides whether this scheduler still leads.)
    why = s;
  } else if (maintenance && election_->LeaseValid()) {
    // Maintenance writes; without a valid lease it would only wait on etcd.
    owned_active_->scheduler->Tick();
  }
  if (!why.ok()) StepDown(why);
}

absl::Status HaScheduler::Takeover() {
  const SteadyClock::time_point start = SteadyClock::now();
  std::optional<ledger::etcd::EtcdLedger> warm;
  if (follower_ != nullptr && follower_->status().ok()) warm = follower_->Current();
  follower_.reset();
  const bool was_warm = warm.has_value();
  ASSIGN_OR_RETURN(std::unique_ptr<ledger::etcd::EtcdStore> store,
                   ledger::etcd::EtcdStore::Open({.client = etcd_,
                                                  .prefix = options_.prefix,
                                                  .fence = election_->fence(),
                                                  .compact = options_.compact,
                                                  .refuse_after = options_.refuse_after},
                                                 std::move(warm)));
  ledger::etcd::EtcdStore* raw = store.get();
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler,
                   Scheduler::Open(options_.scheduler, std::move(store)));
  const uint64_t records = scheduler->ledger().recovery().records_replayed;
  const int64_t revision = raw->recovered_revision();
  owned_active_ = std::make_unique<Active>(
      Active{.scheduler = std::move(scheduler), .store = raw, .election = election_.get()});
  active_.store(owned_active_.get());
  const absl::Duration took = absl::FromChrono(SteadyClock::now() - start);
  {
    absl::MutexLock l(&mu_);
    leader_ = options_.advertise;
    ++counters_.takeovers;
    counters_.last_takeover = took;
    counters_.last_takeover_records = records;
  }
  LOG(INFO) << "scheduler " << options_.advertise << " leads (" << election_->fence().key
            << "): took over in " << absl::FormatDuration(took) << " from "
            << (was_warm ? "its followed copy" : "a fresh read") << " at etcd revision " << revision
            << ", " << records << " records after the snapshot";
  return absl::OkStatus();
}

void HaScheduler::StepDown(const absl::Status& why) {
  LOG(WARNING) << "scheduler " << options_.advertise << " steps down: " << why;
  active_.store(nullptr);
  owned_active_->store->Close(
      absl::UnavailableError(absl::StrCat("the scheduler stepped down: ", why.message())));
  // Calls that entered before finish on the old scheduler (their writes now fail).
  while (inflight_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  owned_active_.reset();
  // Resigns, if the lease still stands (a failed store): a standby takes over at once.
  election_.reset();
  absl::MutexLock l(&mu_);
  leader_.clear();
  ++counters_.step_downs;
}

absl::Status HaScheduler::Stop() {
  absl::Status s;
  if (owned_active_ != nullptr) {
    active_.store(nullptr);
    while (inflight_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    s = owned_active_->scheduler->Snapshot();
    owned_active_.reset();
  }
  follower_.reset();
  election_.reset();
  return s;
}

std::string HaScheduler::MetricsText() const {
  Metrics m;
  const Counters c = counters();
  m.Describe("autoscaling_scheduler_leading", Metrics::kGauge,
             "1 while this scheduler leads its group; 0 while it is a standby.");
  m.Set("autoscaling_scheduler_leading", {}, leading() ? 1 : 0);
  m.Describe("autoscaling_scheduler_takeovers_total", Metrics::kCounter,
             "Times this scheduler took over as the leader.");
  m.Set("autoscaling_scheduler_takeovers_total", {}, static_cast<double>(c.takeovers));
  m.Describe("autoscaling_scheduler_step_downs_total", Metrics::kCounter,
             "Times this scheduler stopped leading (lease lost, store fenced off).");
  m.Set("autoscaling_scheduler_step_downs_total", {}, static_cast<double>(c.step_downs));
  m.Describe("autoscaling_scheduler_takeover_seconds", Metrics::kGauge,
             "How long the last takeover took (catching up the ledger and recovering it).");
  m.Set("autoscaling_scheduler_takeover_seconds", {}, absl::ToDoubleSeconds(c.last_takeover));
  std::string page = m.Render();
  const_cast<HaScheduler*>(this)->WithActive(
      [&](Active& a) { page += a.scheduler->MetricsText(); });
  return page;
}

// --- the routed calls ---

template <typename T, typename F>
absl::StatusOr<T> HaScheduler::Router::Call(F f) {
  Active* a = ha_.Enter();
  if (a == nullptr) return ha_.NotLeader();
  absl::StatusOr<T> r = f(a->scheduler->service());
  ha_.Exit();
  return r;
}

absl::StatusOr<api::v1::PermitResponse> HaScheduler::Router::Request(
    const api::v1::PermitRequest& r) {
  return Call<api::v1::PermitResponse>([&](auto& s) { return s.Request(r); });
}

void HaScheduler::Router::RequestAsync(
    const api::v1::PermitRequest& r,
    std::function<void(absl::StatusOr<api::v1::PermitResponse>)> done) {
  Active* a = ha_.Enter();
  if (a == nullptr) {
    done(ha_.NotLeader());
    return;
  }
  // `done` may run later, from the store's thread; the store answers every waiter before it is
  // destroyed (with an error once closed).
  a->scheduler->service().RequestAsync(r, std::move(done));
  ha_.Exit();
}

absl::StatusOr<api::v1::RegisterNodeResponse> HaScheduler::Router::RegisterNode(
    const api::v1::RegisterNodeRequest& r) {
  return Call<api::v1::RegisterNodeResponse>([&](auto& s) { return s.RegisterNode(r); });
}

absl::StatusOr<api::v1::MigrationOrdersResponse> HaScheduler::Router::GetMigrationOrders(
    const api::v1::MigrationOrdersRequest& r) {
  return Call<api::v1::MigrationOrdersResponse>([&](auto& s) { return s.GetMigrationOrders(r); });
}

absl::StatusOr<api::v1::MigrationResultResponse> HaScheduler::Router::ReportMigration(
    const api::v1::MigrationResult& r) {
  return Call<api::v1::MigrationResultResponse>([&](auto& s) { return s.ReportMigration(r); });
}

absl::StatusOr<api::v1::PlaceVmResponse> HaScheduler::Router::PlaceVm(
    const api::v1::PlaceVmRequest& r) {
  return Call<api::v1::PlaceVmResponse>([&](auto& s) { return s.PlaceVm(r); });
}

absl::StatusOr<api::v1::ReleaseVmResponse> HaScheduler::Router::ReleaseVm(
    const api::v1::ReleaseVmRequest& r) {
  return Call<api::v1::ReleaseVmResponse>([&](auto& s) { return s.ReleaseVm(r); });
}

absl::StatusOr<api::v1::ListNodesResponse> HaScheduler::Router::ListNodes(
    const api::v1::ListRequest& r) {
  return Call<api::v1::ListNodesResponse>([&](auto& s) { return s.ListNodes(r); });
}

absl::StatusOr<api::v1::ListVmsResponse> HaScheduler::Router::ListVms(
    const api::v1::ListRequest& r) {
  return Call<api::v1::ListVmsResponse>([&](auto& s) { return s.ListVms(r); });
}

absl::StatusOr<api::v1::StatusResponse> HaScheduler::Router::GetStatus(
    const api::v1::StatusRequest& r) {
  return Call<api::v1::StatusResponse>([&](auto& s) { return s.GetStatus(r); });
}

absl::StatusOr<api::v1::UpdateNodeResponse> HaScheduler::Router::UpdateNode(
    const api::v1::UpdateNodeRequest& r) {
  return Call<api::v1::UpdateNodeResponse>([&](auto& s) { return s.UpdateNode(r); });
}

absl::StatusOr<api::v1::CordonNodeResponse> HaScheduler::Router::CordonNode(
    const api::v1::CordonNodeRequest& r) {
  return Call<api::v1::CordonNodeResponse>([&](auto& s) { return s.CordonNode(r); });
}

absl::StatusOr<api::v1::DrainNodeResponse> HaScheduler::Router::DrainNode(
    const api::v1::DrainNodeRequest& r) {
  return Call<api::v1::DrainNodeResponse>([&](auto& s) { return s.DrainNode(r); });
}

absl::StatusOr<api::v1::RemoveNodeResponse> HaScheduler::Router::RemoveNode(
    const api::v1::RemoveNodeRequest& r) {
  return Call<api::v1::RemoveNodeResponse>([&](auto& s) { return s.RemoveNode(r); });
}

absl::StatusOr<api::v1::UpdateVmBoundsResponse> HaScheduler::Router::UpdateVmBounds(
    const api::v1::UpdateVmBoundsRequest& r) {
  return Call<api::v1::UpdateVmBoundsResponse>([&](auto& s) { return s.UpdateVmBounds(r); });
}

}  // namespace autoscale::scheduler
