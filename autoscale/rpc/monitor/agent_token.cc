#include "autoscale/rpc/monitor/agent_token.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "openssl/crypto.h"

namespace autoscale::rpc::monitor {
namespace {

constexpr size_t kTokenBytes = 32;
constexpr size_t kMinFileBytes = 16;
constexpr size_t kMaxFileBytes = kMaxAgentTokenBytes;

absl::Status Errno(int error, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  return absl::FailedPreconditionError(message);
}

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
  const std::string what = absl::StrCat("agent token ", path);
  // The file may sit in a directory another user (QEMU's) controls: a link there must not make
  // this process read another file, nor a FIFO block it. A regular file of this user's or
  // root's only.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return Errno(errno, what);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    return Errno(error, what);
  }
  if (!S_ISREG(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != 0)) {
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat(what, ": not a regular file of user ", geteuid(), " or root (uid ", st.st_uid,
                     ", mode ", absl::StrFormat("%o", st.st_mode), ")"));
  }
  std::string token;
  char buffer[512];
  while (token.size() <= kMaxFileBytes) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return Errno(error, what);
    }
    if (n == 0) break;
    token.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (token.size() < kMinFileBytes || token.size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", token.size() > kMaxFileBytes ? "over " : "", token.size(),
                     " bytes; a token has ", kMinFileBytes, " to ", kMaxFileBytes));
  }
  return token;
}

bool TokensEqual(std::string_view a, std::string_view b) {
  // The length is not secret (every token is 64 digits); the contents are.
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace autoscale::rpc::monitor
