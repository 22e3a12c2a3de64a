#include "autoscale/rpc/tls_flags.h"

#include <string>

#include "absl/flags/flag.h"

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

namespace autoscale::rpc {

absl::StatusOr<Security> SecurityFromTlsFlags(std::string_view program) {
  return SecurityFromFlags({.cert = absl::GetFlag(FLAGS_tls_cert),
                            .key = absl::GetFlag(FLAGS_tls_key),
                            .ca = absl::GetFlag(FLAGS_tls_ca)},
                           absl::GetFlag(FLAGS_insecure), program);
}

}  // namespace autoscale::rpc
