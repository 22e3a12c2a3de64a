#include "autoscale/base/owned_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace autoscale {
namespace {

absl::Status Errno(int error, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  return absl::FailedPreconditionError(message);
}

}  // namespace

absl::Status WriteNewFile(const std::string& path, std::string_view contents, int mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return Errno(errno, absl::StrCat("create ", path));
  const bool written =
      write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
  const int error = errno;
  if (close(fd) != 0 || !written) {
    return Errno(written ? errno : error, absl::StrCat("write ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadOwnedFile(const std::string& path, size_t max_bytes,
                                          bool root_may_own) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return Errno(errno, path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int error = errno;
    close(fd);
    return Errno(error, path);
  }
  if (!S_ISREG(st.st_mode) || (st.st_uid != geteuid() && !(root_may_own && st.st_uid == 0))) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrCat(
        path, ": not a regular file of user ", geteuid(), root_may_own ? " or root" : "", " (uid ",
        st.st_uid, ", mode ", absl::StrFormat("%o", st.st_mode), ")"));
  }
  std::string contents;
  char buffer[512];
  while (contents.size() <= max_bytes) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return Errno(error, path);
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return contents;
}

}  // namespace autoscale
