// A peer's workload identity as its certificate names it (the first URI SAN, rpc::PeerIdentity):
// spiffe://<trust-domain>/node/<name> (a node's agent), .../scheduler, .../admin, .../vm/<name>
// (a VM's monitor). What each may do is decided where the calls are answered (the scheduler's
// Authz, the monitor's AgentLink); this only reads the name.
//
//   rpc::Identity who = rpc::ParseIdentity("spiffe://prod/node/a");
//   // who.role == kNode, who.name == "a", who.trust_domain == "prod"
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace autoscale::rpc {

struct Identity {
  enum class Role { kNone, kNode, kScheduler, kAdmin, kVm };
  Role role = Role::kNone;
  // The node's or the VM's name.
  std::string name{};
  // "prod" of spiffe://prod/...; "" when the URI is not a SPIFFE ID.
  std::string trust_domain{};
  // As the certificate says it ("" for none).
  std::string uri{};
};

// The forms above; anything else is Role::kNone (with the trust domain when it has one).
Identity ParseIdentity(const std::string& uri);

// The URI of the identity at `path` in `trust_domain`: SpiffeUri("prod", "node/a") is
// "spiffe://prod/node/a". What a client expects its server to be (ChannelCredentials).
std::string SpiffeUri(const std::string& trust_domain, const std::string& path);

// How errors and logs name `who`: its URI, or "a caller without an identity".
std::string Describe(const Identity& who);

// The first URI SAN of the (first) certificate in a PEM file: a daemon's own identity. "" when it
// has none. Errors name the file.
absl::StatusOr<std::string> CertificateIdentity(const std::string& pem_file);

}  // namespace autoscale::rpc
