// The flags every daemon and schedctl take for their gRPC links: --tls_cert, --tls_key,
// --tls_ca (mutual TLS), or --insecure (plaintext, asked for explicitly), and --trust_domain.
// See tls.h.
//
//   absl::StatusOr<rpc::Security> security = rpc::SecurityFromTlsFlags("agent");
//   if (!security.ok()) { LOG(ERROR) << security.status(); return 2; }
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "autoscale/rpc/tls.h"

namespace autoscale::rpc {

// SecurityFromFlags (tls.h) over this program's flags.
absl::StatusOr<Security> SecurityFromTlsFlags(std::string_view program);

// The trust domain whose identities the program accepts ("prod" for spiffe://prod/...):
// --trust_domain if given, else with TLS its own certificate's (`security`'s --tls_cert, read
// now), else "" (plaintext, or a certificate without a SPIFFE ID: any). The scheduler and the
// monitor check it.
absl::StatusOr<std::string> TrustDomainFromFlags(const Security& security);

// What a server this program reaches with `security` must name (ChannelCredentials' server
// identity): spiffe://<trust_domain>/<path> with TLS and a trust domain, else "" (any
// certificate the CA signed). ServerIdentity(tls, "prod", "scheduler") is
// "spiffe://prod/scheduler".
std::string ServerIdentity(const Security& security, const std::string& trust_domain,
                           const std::string& path);

}  // namespace autoscale::rpc
