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

// --trust_domain: the trust domain whose identities the program accepts ("prod" for
// spiffe://prod/...), "" for any the CA signs. The scheduler and the monitor check it.
std::string TrustDomainFromFlags();

}  // namespace autoscale::rpc
