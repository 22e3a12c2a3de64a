#include "autoscale/testing/cluster_status.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/testing/vm.h"

namespace autoscale::testing {

std::string ClusterMissing() {
  if (std::string why = GuestMissing(); !why.empty()) return why;
  if (access("/sys/fs/cgroup", F_OK) != 0) return "no /sys/fs/cgroup";
  if (auto bin = FindBinaries(); !bin.ok()) return std::string(bin.status().message());
  return "";
}

const api::v1::VmStatus* VmStatus(const api::v1::AgentStatus& status, const std::string& vm) {
  for (const api::v1::VmStatus& v : status.vms()) {
    if (v.vm() == vm) return &v;
  }
  return nullptr;
}

absl::StatusOr<api::v1::AgentStatus> AwaitStatus(
    Cluster& cluster, const std::string& node, absl::Duration timeout,
    const std::function<bool(const api::v1::AgentStatus&)>& done) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "(none)";
  while (true) {
    absl::StatusOr<api::v1::AgentStatus> status = cluster.AgentStatus(node);
    if (status.ok()) {
      last = ToJson(*status);
      if (done(*status)) return status;
    } else {
      last = status.status().ToString();
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("agent status never matched; last: " + last);
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

int64_t CurrentMemory(const api::v1::AgentStatus& status, const std::string& vm) {
  const api::v1::VmStatus* v = VmStatus(status, vm);
  return v == nullptr ? -1 : v->current().memory_bytes();
}

std::vector<api::v1::AgentEvent> Events(const api::v1::AgentStatus& status, const std::string& vm,
                                        api::v1::EventKind kind, uint64_t since) {
  std::vector<api::v1::AgentEvent> out;
  for (const api::v1::AgentEvent& e : status.events()) {
    if (e.seq() > since && e.vm() == vm && e.kind() == kind) out.push_back(e);
  }
  return out;
}

bool HasEvent(const api::v1::AgentStatus& status, const std::string& vm, api::v1::EventKind kind,
              uint64_t since) {
  return !Events(status, vm, kind, since).empty();
}

uint64_t LastEvent(const api::v1::AgentStatus& status) {
  uint64_t seq = 0;
  for (const api::v1::AgentEvent& e : status.events()) seq = std::max(seq, e.seq());
  return seq;
}

std::optional<double> ReactionMs(const std::string& line) {
  const std::string key = "online after ";
  size_t at = line.find(key);
  if (at == std::string::npos) return std::nullopt;
  size_t end = line.find(" ms", at);
  double ms;
  if (end == std::string::npos ||
      !absl::SimpleAtod(line.substr(at + key.size(), end - at - key.size()), &ms)) {
    return std::nullopt;
  }
  return ms;
}

}  // namespace autoscale::testing
