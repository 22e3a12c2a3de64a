// gRPC credentials for an rpc::Security (tls.h), and the caller's identity on the server side:
// for the transports here, and for tools and tests that make their own gRPC channels.
#pragma once

#include <memory>
#include <string>

#include "autoscale/rpc/tls.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"

namespace autoscale::rpc {

// Mutual TLS: the server requires a client certificate and verifies it against the CA.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Security& security);
// Mutual TLS: the client presents its certificate and verifies the server's chain against the CA.
// Host names are not checked: identities are URI SANs, and daemons are dialed by address. With
// `server_identity` ("spiffe://prod/node/b"), the server's certificate must also name it as its
// first URI SAN, or the handshake fails (logged with the identity it named) before any request
// is sent: a valid certificate of another workload does not receive what is meant for this one.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const Security& security,
                                                             std::string server_identity = "");

// The first URI SAN of the peer's verified certificate ("spiffe://td/node/a"), or "" (plaintext,
// or a certificate without one).
std::string PeerIdentity(const grpc::ServerContextBase& context);
// The same of the server, on a client call whose handshake is done.
std::string PeerIdentity(const grpc::ClientContext& context);

}  // namespace autoscale::rpc
