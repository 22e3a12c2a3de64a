#include "absl/strings/cord.h"
#include "absl/types/optional.h"
#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::rpc::scheduler {
namespace {

constexpr char kLeaderPayload[] = "type.autoscale/scheduler.leader";

}  // namespace

absl::Status NotLeaderError(std::string_view message, std::string_view leader) {
  absl::Status s = absl::UnavailableError(absl::string_view(message.data(), message.size()));
  if (!leader.empty()) {
    s.SetPayload(kLeaderPayload, absl::Cord(absl::string_view(leader.data(), leader.size())));
  }
  return s;
}

std::string LeaderOf(const absl::Status& status) {
  absl::optional<absl::Cord> leader = status.GetPayload(kLeaderPayload);
  return leader ? std::string(*leader) : std::string();
}

}  // namespace autoscale::rpc::scheduler
