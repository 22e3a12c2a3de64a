#include "autoscale/rpc/tls.h"

#include <sys/stat.h>

#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace autoscale::rpc {
namespace {

absl::Status CheckReadable(const std::string& path, const char* what) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("TLS: no ", what, " file"));
  std::ifstream in(path);
  std::string first;
  if (!in || !std::getline(in, first)) {
    return absl::InvalidArgumentError(absl::StrCat("TLS: cannot read the ", what, " file ", path));
  }
  // gRPC's file watcher reads a modification time of 0 as an error and never loads the file.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || st.st_mtime == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS: the ", what, " file ", path,
                     " has modification time 0 (touch it): gRPC cannot watch it"));
  }
  if (first.rfind("-----BEGIN ", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS: the ", what, " file ", path, " is not PEM (no -----BEGIN line first)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Security> Security::MutualTls(TlsFiles files, absl::Duration refresh) {
  if (absl::Status s = CheckReadable(files.cert, "certificate"); !s.ok()) return s;
  if (absl::Status s = CheckReadable(files.key, "key"); !s.ok()) return s;
  if (absl::Status s = CheckReadable(files.ca, "CA"); !s.ok()) return s;
  if (refresh < absl::Seconds(1)) {
    return absl::InvalidArgumentError("TLS: the refresh interval must be at least 1s");
  }
  Security security;
  security.files_ = std::move(files);
  security.refresh_ = refresh;
  return security;
}

absl::StatusOr<Security> SecurityFromFlags(const TlsFiles& files, bool insecure,
                                           std::string_view program) {
  const int given = !files.cert.empty() + !files.key.empty() + !files.ca.empty();
  if (given > 0 && insecure) {
    return absl::InvalidArgumentError(
        "--insecure and --tls_cert/--tls_key/--tls_ca exclude each other");
  }
  if (given == 3) return Security::MutualTls(files);
  if (given > 0) {
    return absl::InvalidArgumentError("mutual TLS needs all of --tls_cert, --tls_key and --tls_ca");
  }
  if (!insecure) {
    return absl::InvalidArgumentError(
        "give --tls_cert, --tls_key and --tls_ca (mutual TLS), or --insecure for plaintext "
        "(local development only)");
  }
  LOG(WARNING) << program
               << ": --insecure: gRPC links are plaintext and unauthenticated; any caller that can "
                  "reach them may act as any node or admin";
  return Security::Plaintext();
}

}  // namespace autoscale::rpc
