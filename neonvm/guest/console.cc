#include "neonvm/guest/console.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace autoscale::neonvm::guest {
namespace {

std::string RandomTag() {
  std::random_device rd;
  return absl::StrCat(absl::Hex(rd() & 0xffffff));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GuestConsole>> GuestConsole::Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("serial socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connecting to the serial port ", path, ": ", std::strerror(err)));
  }
  return std::unique_ptr<GuestConsole>(new GuestConsole(fd, path));
}

GuestConsole::GuestConsole(int fd, std::string path)
    : fd_(fd), path_(std::move(path)), tag_(RandomTag()) {}

GuestConsole::~GuestConsole() { close(fd_); }

absl::Status GuestConsole::ReadMore(absl::Time deadline) {
  int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
  if (ms <= 0) return absl::DeadlineExceededError("timed out");
  pollfd p{fd_, POLLIN, 0};
  int r = poll(&p, 1, ms);
  if (r < 0 && errno == EINTR) return absl::OkStatus();
  if (r == 0) return absl::DeadlineExceededError("timed out");
  char buf[8192];
  ssize_t n = recv(fd_, buf, sizeof(buf), 0);
  if (n < 0 && errno == EINTR) return absl::OkStatus();
  if (n <= 0) {
    return absl::UnavailableError(n == 0 ? "serial port closed (QEMU exited?)"
                                         : std::strerror(errno));
  }
  buffer_.append(buf, n);
  return absl::OkStatus();
}

absl::Status GuestConsole::WaitFor(std::string_view text, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::string_view want(text.data(), text.size());
  while (true) {
    size_t at = buffer_.find(text);
    if (at != std::string::npos) {
      buffer_.erase(0, at + text.size());
      return absl::OkStatus();
    }
    absl::Status s = ReadMore(deadline);
    if (!s.ok()) {
      std::string tail = buffer_.substr(buffer_.size() > 500 ? buffer_.size() - 500 : 0);
      return absl::Status(s.code(), absl::StrCat("waiting for \"", want, "\" on ", path_, ": ",
                                                 s.message(), "; last output: ", tail));
    }
  }
}

absl::StatusOr<std::string> GuestConsole::Run(std::string_view command, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  std::string id = absl::StrCat(tag_, "-", next_command_++);
  // The markers are split by quotes in the command, so an echo of the input never matches them.
  std::string begin = absl::StrCat("==B", id, "==");
  std::string end = absl::StrCat("==E", id, "=");
  std::string line = absl::StrCat("echo \"==B", id, "\"\"==\"\n",
                                  absl::string_view(command.data(), command.size()), "\necho \"==E",
                                  id, "=$?\"\"==\"\n");
  for (size_t sent = 0; sent < line.size();) {
    ssize_t n = send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("writing to the serial port ", path_, ": ", std::strerror(errno)));
    }
    sent += n;
  }
  auto where = [&] {
    return absl::StrCat("guest command `", absl::string_view(command.data(), command.size()),
                        "` on ", path_);
  };
  absl::Status s = WaitFor(begin, deadline - absl::Now());
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(where(), ": ", s.message()));
  // "<output>==E<id>=<status>=="
  size_t at, close;
  while ((at = buffer_.find(end)) == std::string::npos ||
         (close = buffer_.find("==", at + end.size())) == std::string::npos) {
    s = ReadMore(deadline);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat(where(), ": ", s.message(),
                                                 "; output so far: ", buffer_.substr(0, 2000)));
    }
  }
  std::string output = absl::StrReplaceAll(buffer_.substr(0, at), {{"\r", ""}});
  std::string status_text = buffer_.substr(at + end.size(), close - at - end.size());
  buffer_.erase(0, close + 2);
  if (!output.empty() && output.front() == '\n') output.erase(0, 1);
  if (!output.empty() && output.back() == '\n') output.pop_back();
  int status = -1;
  if (!absl::SimpleAtoi(status_text, &status) || status != 0) {
    return absl::InternalError(
        absl::StrCat(where(), ": exit status ", status_text, "; output: ", output));
  }
  return output;
}

}  // namespace autoscale::neonvm::guest
