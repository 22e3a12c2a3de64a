// rpc::Security: how a daemon's gRPC links are protected, given to every server and client of
// autoscale/rpc (no gRPC header here). Either mutual TLS from PEM files (each side presents a
// certificate signed by the shared CA, and each verifies the other's), or plaintext, which must
// be asked for (--insecure) and is meant for local development only.
//
// With TLS, the files are watched and re-read when they change (gRPC's file-watcher certificate
// provider), so certificates rotate without a restart. A peer's identity is the first URI SAN of
// its certificate: spiffe://<trust-domain>/node/<name>, .../scheduler, .../admin, .../vm/<name>
// (the scheduler's gRPC server hands it to the scheduler library, which authorizes).
//
//   ASSIGN_OR_RETURN(rpc::Security security,
//                    rpc::Security::MutualTls({.cert = "n.pem", .key = "n.key", .ca = "ca.pem"}));
//   ASSIGN_OR_RETURN(auto server, rpc::scheduler::StartGrpcServer(service, addr, security));
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace autoscale::rpc {

struct TlsFiles {
  // This side's certificate (PEM; may carry intermediates after it) and its private key.
  std::string cert{};
  std::string key{};
  // The CA that signs every peer's certificate (PEM).
  std::string ca{};
};

class Security {
 public:
  // No encryption, no authentication: every caller is anonymous.
  static Security Plaintext() { return Security(); }
  // Mutual TLS from `files`, all three required and readable now (the error names the file).
  // `refresh` is how often the files are checked for a change.
  static absl::StatusOr<Security> MutualTls(TlsFiles files,
                                            absl::Duration refresh = absl::Seconds(10));

  bool tls() const { return !files_.cert.empty(); }
  const TlsFiles& files() const { return files_; }
  absl::Duration refresh() const { return refresh_; }

 private:
  TlsFiles files_{};
  absl::Duration refresh_{};
};

// What a daemon's --tls_cert, --tls_key, --tls_ca and --insecure ask for: mutual TLS when the
// three files are given, plaintext only with `insecure` (logged as a warning), an error naming
// the flags otherwise (some files and not others, files and --insecure, or nothing).
absl::StatusOr<Security> SecurityFromFlags(const TlsFiles& files, bool insecure,
                                           std::string_view program);

}  // namespace autoscale::rpc
