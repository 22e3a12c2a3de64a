#include "autoscale/rpc/identity.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

std::string SpiffeUri(const std::string& trust_domain, const std::string& path) {
  return absl::StrCat("spiffe://", trust_domain, "/", path);
}

std::string Describe(const Identity& who) {
  return who.uri.empty() ? "a caller without an identity" : who.uri;
}

absl::StatusOr<std::string> CertificateIdentity(const std::string& pem_file) {
  FILE* f = fopen(pem_file.c_str(), "re");
  if (f == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("open ", pem_file));
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(pem_file, ": no PEM certificate in it"));
  }
  std::string uri;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = name->d.uniformResourceIdentifier;
    uri.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
    break;
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return uri;
}

}  // namespace autoscale::rpc
