#include "autoscale/rpc/identity.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace autoscale::rpc {

Identity ParseIdentity(const std::string& uri) {
  Identity id;
  id.uri = uri;
  absl::string_view rest = uri;
  if (!absl::ConsumePrefix(&rest, "spiffe://")) return id;
  const size_t slash = rest.find('/');
  if (slash == 0 || slash == absl::string_view::npos) return id;  // no trust domain, or no path
  id.trust_domain = std::string(rest.substr(0, slash));
  const std::vector<absl::string_view> path = absl::StrSplit(rest.substr(slash + 1), '/');
  if (path.size() == 1 && path[0] == "admin") {
    id.role = Identity::Role::kAdmin;
  } else if (path.size() == 1 && path[0] == "scheduler") {
    id.role = Identity::Role::kScheduler;
  } else if (path.size() == 2 && !path[1].empty() && (path[0] == "node" || path[0] == "vm")) {
    id.role = path[0] == "node" ? Identity::Role::kNode : Identity::Role::kVm;
    id.name = std::string(path[1]);
  }
  return id;
}

std::string Describe(const Identity& who) {
  return who.uri.empty() ? "a caller without an identity" : who.uri;
}

}  // namespace autoscale::rpc
