#include "autoscale/testing/cluster_status.h"

#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "autoscale/testing/vm.h"

namespace autoscale::testing {

std::string ClusterMissing() {
  if (std::string why = GuestMissing(); !why.empty()) return why;
  if (access("/sys/fs/cgroup", F_OK) != 0) return "no /sys/fs/cgroup";
  if (auto bin = FindBinaries(); !bin.ok()) return std::string(bin.status().message());
  return "";
}

const rapidjson::Value* VmStatus(const rapidjson::Document& status, const std::string& vm) {
  if (!status.IsObject() || !status.HasMember("vms") || !status["vms"].IsArray()) return nullptr;
  for (const auto& v : status["vms"].GetArray()) {
    if (v.HasMember("vm") && v["vm"].IsString() && vm == v["vm"].GetString()) return &v;
  }
  return nullptr;
}

absl::StatusOr<rapidjson::Document> AwaitStatus(
    Cluster& cluster, const std::string& node, absl::Duration timeout,
    const std::function<bool(const rapidjson::Document&)>& done) {
  const absl::Time deadline = absl::Now() + timeout;
  rapidjson::Document doc;
  std::string last = "(none)";
  while (true) {
    absl::StatusOr<std::string> text = cluster.AgentStatus(node);
    if (text.ok()) {
      last = *text;
      doc.Parse(text->c_str());
      if (!doc.HasParseError() && done(doc)) return doc;
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("agent status never matched; last: " + last);
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

int64_t Field(const rapidjson::Value* vm, const char* what, const char* unit) {
  if (vm == nullptr || !vm->HasMember(what)) return -1;
  const rapidjson::Value& r = (*vm)[what];
  if (!r.IsObject() || !r.HasMember(unit) || !r[unit].IsInt64()) return -1;
  return r[unit].GetInt64();
}

bool HasEvent(const rapidjson::Document& status, const std::string& vm, const std::string& kind,
              const std::string& text, uint64_t since) {
  if (!status.HasMember("events")) return false;
  for (const auto& e : status["events"].GetArray()) {
    if (e["seq"].GetUint64() > since && vm == e["vm"].GetString() &&
        kind == e["kind"].GetString() && absl::StrContains(e["text"].GetString(), text)) {
      return true;
    }
  }
  return false;
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
