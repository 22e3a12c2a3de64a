#include "autoscale/rpc/credentials.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace autoscale::rpc {
namespace {

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(
    const Security& security) {
  const TlsFiles& f = security.files();
  // Re-reads the three files every refresh interval: a rotated certificate is used for the next
  // handshakes without a restart.
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      f.key, f.cert, f.ca, absl::ToInt64Seconds(security.refresh()));
}

// Accepts a server (its chain already verified against the CA) whose first URI SAN is `want`.
class IdentityVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit IdentityVerifier(std::string want) : want_(std::move(want)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    const std::vector<grpc::string_ref> uris = request->uri_names();
    const std::string got = uris.empty() ? "" : std::string(uris[0].data(), uris[0].size());
    if (got == want_) {
      *sync_status = grpc::Status::OK;
    } else {
      const std::string why =
          absl::StrCat("server certificate names ", got.empty() ? "no identity" : got,
                       ", not the expected ", want_);
      LOG(WARNING) << why;
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why);
    }
    return true;  // decided synchronously
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest* /*request*/) override {}

 private:
  const std::string want_;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Security& security) {
  if (!security.tls()) return grpc::InsecureServerCredentials();
  grpc::experimental::TlsServerCredentialsOptions options(Provider(security));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const Security& security,
                                                             std::string server_identity) {
  if (!security.tls()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(security));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      server_identity.empty()
          ? std::make_shared<grpc::experimental::NoOpCertificateVerifier>()
          : grpc::experimental::ExternalCertificateVerifier::Create<IdentityVerifier>(
                std::move(server_identity)));
  options.set_check_call_host(false);
  return grpc::experimental::TlsCredentials(options);
}

namespace {

std::string FirstUri(const std::shared_ptr<const grpc::AuthContext>& auth) {
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  // gRPC lists the certificate's URI SANs under "peer_uri", in certificate order.
  for (const grpc::string_ref& uri : auth->FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
    return std::string(uri.data(), uri.size());
  }
  return "";
}

}  // namespace

std::string PeerIdentity(const grpc::ServerContextBase& context) {
  return FirstUri(context.auth_context());
}

std::string PeerIdentity(const grpc::ClientContext& context) {
  return FirstUri(context.auth_context());
}

}  // namespace autoscale::rpc
