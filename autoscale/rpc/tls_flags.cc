#include "autoscale/rpc/tls_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/rpc/identity.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, tls_cert, "",
          "mutual TLS: this program's certificate (PEM; its first URI SAN is its identity, "
          "spiffe://<trust-domain>/node/<name>, .../scheduler, .../admin, .../vm/<name>)");
ABSL_FLAG(std::string, tls_key, "", "mutual TLS: the private key of --tls_cert (PEM)");
ABSL_FLAG(std::string, tls_ca, "",
          "mutual TLS: the CA that signs every peer's certificate (PEM); the three files are "
          "re-read when they change");
ABSL_FLAG(bool, insecure, false,
          "plaintext gRPC without authentication, for local development only (instead of "
          "--tls_cert, --tls_key and --tls_ca)");

ABSL_FLAG(std::string, trust_domain, "",
          "mutual TLS: the trust domain of the identities this program accepts "
          "(spiffe://<trust-domain>/...); a peer of another is refused. Empty: the one of "
          "--tls_cert's own identity");

namespace autoscale::rpc {

absl::StatusOr<std::string> TrustDomainFromFlags(const Security& security) {
  if (!absl::GetFlag(FLAGS_trust_domain).empty()) return absl::GetFlag(FLAGS_trust_domain);
  if (!security.tls()) return std::string();
  ASSIGN_OR_RETURN(std::string own, CertificateIdentity(security.files().cert));
  const Identity me = ParseIdentity(own);
  if (me.trust_domain.empty()) {
    LOG(WARNING) << security.files().cert << " has no SPIFFE ID (" << Describe(me)
                 << "): peers of any trust domain the CA signs are accepted; set --trust_domain";
  }
  return me.trust_domain;
}

std::string ServerIdentity(const Security& security, const std::string& trust_domain,
                           const std::string& path) {
  return security.tls() && !trust_domain.empty() ? SpiffeUri(trust_domain, path) : "";
}

absl::StatusOr<Security> SecurityFromTlsFlags(std::string_view program) {
  return SecurityFromFlags({.cert = absl::GetFlag(FLAGS_tls_cert),
                            .key = absl::GetFlag(FLAGS_tls_key),
                            .ca = absl::GetFlag(FLAGS_tls_ca)},
                           absl::GetFlag(FLAGS_insecure), program);
}

}  // namespace autoscale::rpc
