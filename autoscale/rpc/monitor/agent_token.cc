#include "autoscale/rpc/monitor/agent_token.h"

#include <sys/random.h>

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/owned_file.h"
#include "glog/logging.h"
#include "openssl/crypto.h"

namespace autoscale::rpc::monitor {
namespace {

constexpr size_t kTokenBytes = 32;
constexpr size_t kMinFileBytes = 16;
constexpr size_t kMaxFileBytes = kMaxAgentTokenBytes;

}  // namespace

std::string NewAgentToken() {
  char bytes[kTokenBytes];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    // getrandom blocks only until the pool is initialized, and then never fails for 32 bytes
    // except when interrupted.
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    PCHECK(n > 0) << "getrandom";
    got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

absl::StatusOr<std::string> ReadAgentToken(const std::string& path) {
  // The file may sit in a directory another user (QEMU's) controls: a link there must not make
  // this process read another file, nor a FIFO block it. A regular file of this user's or
  // root's only.
  absl::StatusOr<std::string> token = ReadOwnedFile(path, kMaxFileBytes, /*root_may_own=*/true);
  if (!token.ok()) {
    return absl::Status(token.status().code(),
                        absl::StrCat("agent token ", token.status().message()));
  }
  if (token->size() < kMinFileBytes || token->size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent token ", path, ": ", token->size() > kMaxFileBytes ? "over " : "",
                     token->size(), " bytes; a token has ", kMinFileBytes, " to ", kMaxFileBytes));
  }
  return token;
}

bool TokensEqual(std::string_view a, std::string_view b) {
  // The length is not secret (every token is 64 digits); the contents are.
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace autoscale::rpc::monitor
