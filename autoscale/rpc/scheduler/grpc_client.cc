#include "autoscale/rpc/scheduler/grpc_client.h"

#include <atomic>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "autoscale/api/scheduler.grpc.pb.h"
#include "autoscale/rpc/credentials.h"
#include "autoscale/rpc/grpc_status.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::rpc::scheduler {
namespace {

// Leaders named by standbys are added to the addresses, up to this many in all.
constexpr size_t kMaxAddresses = 16;

class GrpcClient final : public SchedulerService {
 public:
  // The agent's state machine retries on its own schedule, so gRPC should not: a failed call
  // fails at once. Reconnect quickly once a restarted scheduler is back.
  static grpc::ChannelArguments ChannelArgs() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    return args;
  }

  GrpcClient(const std::vector<std::string>& addresses, absl::Duration timeout,
             const Security& security, const std::string& server_identity)
      : timeout_(timeout), credentials_(rpc::ChannelCredentials(security, server_identity)) {
    absl::MutexLock l(&mu_);
    for (const std::string& a : addresses) Add(a);
  }

  absl::StatusOr<api::v1::PermitResponse> Request(const api::v1::PermitRequest& request) override {
    return Call("Request", &api::v1::Scheduler::Stub::Request, request);
  }
  absl::StatusOr<api::v1::RegisterNodeResponse> RegisterNode(
      const api::v1::RegisterNodeRequest& request) override {
    return Call("RegisterNode", &api::v1::Scheduler::Stub::RegisterNode, request);
  }
  absl::StatusOr<api::v1::MigrationOrdersResponse> GetMigrationOrders(
      const api::v1::MigrationOrdersRequest& request) override {
    return Call("GetMigrationOrders", &api::v1::Scheduler::Stub::GetMigrationOrders, request);
  }
  absl::StatusOr<api::v1::MigrationResultResponse> ReportMigration(
      const api::v1::MigrationResult& request) override {
    return Call("ReportMigration", &api::v1::Scheduler::Stub::ReportMigration, request);
  }
  absl::StatusOr<api::v1::PlaceVmResponse> PlaceVm(
      const api::v1::PlaceVmRequest& request) override {
    return Call("PlaceVm", &api::v1::Scheduler::Stub::PlaceVm, request);
  }
  absl::StatusOr<api::v1::ReleaseVmResponse> ReleaseVm(
      const api::v1::ReleaseVmRequest& request) override {
    return Call("ReleaseVm", &api::v1::Scheduler::Stub::ReleaseVm, request);
  }
  absl::StatusOr<api::v1::ListNodesResponse> ListNodes(
      const api::v1::ListRequest& request) override {
    return Call("ListNodes", &api::v1::Scheduler::Stub::ListNodes, request);
  }
  absl::StatusOr<api::v1::ListVmsResponse> ListVms(const api::v1::ListRequest& request) override {
    return Call("ListVms", &api::v1::Scheduler::Stub::ListVms, request);
  }
  absl::StatusOr<api::v1::StatusResponse> GetStatus(
      const api::v1::StatusRequest& request) override {
    return Call("GetStatus", &api::v1::Scheduler::Stub::GetStatus, request);
  }
  absl::StatusOr<api::v1::UpdateNodeResponse> UpdateNode(
      const api::v1::UpdateNodeRequest& request) override {
    return Call("UpdateNode", &api::v1::Scheduler::Stub::UpdateNode, request);
  }
  absl::StatusOr<api::v1::CordonNodeResponse> CordonNode(
      const api::v1::CordonNodeRequest& request) override {
    return Call("CordonNode", &api::v1::Scheduler::Stub::CordonNode, request);
  }
  absl::StatusOr<api::v1::DrainNodeResponse> DrainNode(
      const api::v1::DrainNodeRequest& request) override {
    return Call("DrainNode", &api::v1::Scheduler::Stub::DrainNode, request);
  }
  absl::StatusOr<api::v1::RemoveNodeResponse> RemoveNode(
      const api::v1::RemoveNodeRequest& request) override {
    return Call("RemoveNode", &api::v1::Scheduler::Stub::RemoveNode, request);
  }
  absl::StatusOr<api::v1::UpdateVmBoundsResponse> UpdateVmBounds(
      const api::v1::UpdateVmBoundsRequest& request) override {
    return Call("UpdateVmBounds", &api::v1::Scheduler::Stub::UpdateVmBounds, request);
  }

 private:
  struct Target {
    std::string address;
    std::unique_ptr<api::v1::Scheduler::Stub> stub;
    // Until then it is passed by: a call to it timed out.
    absl::Time silent_until ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  };

  // The index of `address`, added if new (and there is room; else -1).
  int Add(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = 0; i < targets_.size(); ++i) {
      if (targets_[i]->address == address) return static_cast<int>(i);
    }
    if (targets_.size() >= kMaxAddresses) return -1;
    targets_.push_back(std::make_unique<Target>(
        Target{address, api::v1::Scheduler::NewStub(
                            grpc::CreateCustomChannel(address, credentials_, ChannelArgs()))}));
    return static_cast<int>(targets_.size() - 1);
  }

  template <typename Req, typename Resp>
  absl::StatusOr<Resp> Call(const char* method,
                            grpc::Status (api::v1::Scheduler::Stub::*rpc)(grpc::ClientContext*,
                                                                          const Req&, Resp*),
                            const Req& request) {
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::microseconds(absl::ToInt64Microseconds(timeout_));
    const Req versioned = WithVersion(request);
    size_t count;
    {
      absl::MutexLock l(&mu_);
      count = targets_.size();
    }
    size_t i = current_.load(std::memory_order_relaxed);
    absl::Status last;
    // Every address once, and the leaders they name.
    for (size_t attempt = 0; attempt < 2 * count + 1; ++attempt) {
      Target* target;
      {
        absl::MutexLock l(&mu_);
        target = targets_[i % targets_.size()].get();  // targets are never removed
      }
      grpc::ClientContext context;
      context.set_deadline(deadline);
      Resp response;
      const grpc::Status s = (target->stub.get()->*rpc)(&context, versioned, &response);
      if (s.ok()) {
        current_.store(i, std::memory_order_relaxed);
        return response;
      }
      absl::Status status = FromGrpc(s, absl::StrCat("scheduler ", target->address, " ", method));
      std::string leader;
      const auto& trailers = context.GetServerTrailingMetadata();
      if (auto it = trailers.find(kLeaderMetadata); it != trailers.end()) {
        leader.assign(it->second.data(), it->second.size());
        status = NotLeaderError(std::string(status.message()), leader);
      }
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
        // A call that timed out may have been acted on: not sent again. The next call tries the
        // next address, in case this one is frozen.
        if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          absl::MutexLock l(&mu_);
          target->silent_until = absl::Now() + timeout_;
          current_.store((i + 1) % targets_.size(), std::memory_order_relaxed);
        }
        return status;
      }
      last = std::move(status);
      {
        absl::MutexLock l(&mu_);
        const int named = leader.empty() || leader == target->address ? -1 : Add(leader);
        size_t next = named >= 0 ? named : (i + 1) % targets_.size();
        // A scheduler that just let a call time out (frozen, or cut off) is still named leader by
        // standbys until its lease expires: skip it rather than wait out the timeout again.
        const absl::Time now = absl::Now();
        for (size_t k = 0; k < targets_.size() && targets_[next]->silent_until > now; ++k) {
          next = (next + 1) % targets_.size();
        }
        if (next == i || targets_[next]->silent_until > now) break;
        i = next;
        count = targets_.size();
      }
      current_.store(i, std::memory_order_relaxed);
      if (count == 1 || std::chrono::system_clock::now() >= deadline) break;
    }
    return last;
  }

  const absl::Duration timeout_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  absl::Mutex mu_;
  // Grows only (leaders named by standbys), so a Target* stays valid.
  std::vector<std::unique_ptr<Target>> targets_ ABSL_GUARDED_BY(mu_);
  // The address that answered last.
  std::atomic<size_t> current_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerService>> NewGrpcClient(
    const std::string& addresses, absl::Duration timeout, const Security& security,
    const std::string& server_identity) {
  std::vector<std::string> list;
  for (absl::string_view a : absl::StrSplit(addresses, ',')) {
    a = absl::StripAsciiWhitespace(a);
    if (a.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("scheduler client: empty address in \"", addresses, "\""));
    }
    list.emplace_back(a);
  }
  return std::make_unique<GrpcClient>(list, timeout, security, server_identity);
}

}  // namespace autoscale::rpc::scheduler
