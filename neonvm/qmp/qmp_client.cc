#include "neonvm/qmp/qmp_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "neonvm/qmp/internal/message.h"
#include "rapidjson/document.h"

namespace autoscale::neonvm::qmp {
namespace {

using internal::QmpMessage;

absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

std::string ErrnoText(int err) { return std::strerror(err); }

// Milliseconds left until `deadline`, for poll(): at least 0, rounded up, -1 (no limit) for an
// infinite deadline. Long waits are cut to 2^30 ms; callers loop until their deadline.
int PollMillis(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  constexpr int kMaxMillis = 1 << 30;
  if (left >= absl::Milliseconds(kMaxMillis)) return kMaxMillis;
  return static_cast<int>(absl::ToInt64Milliseconds(left) + 1);
}

// Waits until `fd` is connected (non-blocking connect in progress) or the deadline passes.
absl::Status FinishConnect(int fd, absl::Time deadline, const std::string& address) {
  pollfd p{fd, POLLOUT, 0};
  int n;
  do {
    n = poll(&p, 1, PollMillis(deadline));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return absl::DeadlineExceededError(absl::StrCat("connecting to ", address));
  int err = 0;
  socklen_t len = sizeof(err);
  if (n < 0) err = errno;
  if (err == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    return absl::UnavailableError(absl::StrCat("connecting to ", address, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ConnectUnix(const std::string& path, absl::Time deadline,
                                const std::string& address) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("QMP address ", address,
                                                   ": a unix socket path must have 1 to ",
                                                   sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket(): ", ErrnoText(errno)));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  int err = errno;
  if (err == EINPROGRESS || err == EAGAIN) {
    absl::Status s = FinishConnect(fd, deadline, address);
    if (s.ok()) return fd;
    close(fd);
    return s;
  }
  close(fd);
  return absl::UnavailableError(absl::StrCat("connecting to ", address, ": ", ErrnoText(err)));
}

absl::StatusOr<int> ConnectTcp(const std::string& host_port, absl::Time deadline,
                               const std::string& address) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("QMP address ", address, ": expected tcp:HOST:PORT"));
  }
  std::string host = host_port.substr(0, colon);
  std::string port = host_port.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("QMP address ", address, ": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError(absl::StrCat("connecting to ", address));
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(res);
      return fd;
    }
    if (errno == EINPROGRESS) {
      last = FinishConnect(fd, deadline, address);
      if (last.ok()) {
        freeaddrinfo(res);
        return fd;
      }
    } else {
      last =
          absl::UnavailableError(absl::StrCat("connecting to ", address, ": ", ErrnoText(errno)));
    }
    close(fd);
  }
  freeaddrinfo(res);
  return last;
}

absl::Status ErrorFromQmp(const std::string& cls, const std::string& desc) {
  std::string message = absl::StrCat(cls, ": ", desc);
  if (cls == "CommandNotFound") return absl::UnimplementedError(message);
  if (cls == "DeviceNotFound") return absl::NotFoundError(message);
  return absl::FailedPreconditionError(message);
}

bool ValidCommandName(std::string_view command) {
  if (command.empty() || command.size() > 128) return false;
  return std::all_of(command.begin(), command.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

}  // namespace

// A command waiting for its reply; lives on the caller's stack.
struct QmpClient::Pending {
  bool done = false;
  absl::StatusOr<std::string> result;
};

absl::StatusOr<std::unique_ptr<QmpClient>> QmpClient::Connect(std::string_view address,
                                                              const QmpClientOptions& options) {
  std::string addr(address);
  absl::Time deadline = absl::Now() + options.connect_timeout;
  absl::StatusOr<int> fd;
  if (absl::StartsWith(addr, "tcp:")) {
    fd = ConnectTcp(addr.substr(4), deadline, addr);
  } else if (absl::StartsWith(addr, "unix:")) {
    fd = ConnectUnix(addr.substr(5), deadline, addr);
  } else if (absl::StartsWith(addr, "/") || absl::StartsWith(addr, ".")) {
    fd = ConnectUnix(addr, deadline, addr);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("QMP address \"", addr, "\": expected unix:/path, /path or tcp:host:port"));
  }
  if (!fd.ok()) return fd.status();
  std::unique_ptr<QmpClient> client(new QmpClient(*fd, addr, options));
  absl::Status s = client->Handshake();
  if (!s.ok()) return s;
  return client;
}

QmpClient::QmpClient(int fd, std::string address, const QmpClientOptions& options)
    : fd_(fd),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      address_(std::move(address)),
      options_(options),
      framer_(std::make_unique<internal::LineFramer>(options.max_message_bytes)),
      read_buffer_(64 << 10) {
  if (wake_fd_ < 0) {
    LOG(WARNING) << "QMP on " << address_ << ": eventfd: " << ErrnoText(errno)
                 << "; replies wake the background reader too";
  }
  reader_ = std::thread([this] { BackgroundReader(); });
}

QmpClient::~QmpClient() {
  Fail(absl::CancelledError(absl::StrCat("QMP connection to ", address_, " closed by the client")));
  reader_.join();
  close(fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status QmpClient::Handshake() {
  absl::Time deadline = absl::Now() + options_.connect_timeout;
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return greeted_ || !status_.ok(); };
    if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("QMP on ", address_, ": no greeting within ",
                       absl::FormatDuration(options_.connect_timeout)));
    }
    if (!status_.ok()) return status_;
  }
  absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(1));
  return Execute("qmp_capabilities", {}, left).status();
}

absl::Status QmpClient::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

std::string QmpClient::Where(std::string_view command, std::string_view arguments) const {
  // Name the device or object a command acts on when it has an "id" argument: "device_add cpu3".
  std::string what(command);
  if (!arguments.empty()) {
    rapidjson::Document doc;
    doc.Parse(arguments.data(), arguments.size());
    if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("id") && doc["id"].IsString()) {
      absl::StrAppend(&what, " ", doc["id"].GetString());
    }
  }
  return absl::StrCat("qmp ", what, " on ", address_);
}

absl::StatusOr<std::string> QmpClient::Execute(std::string_view command,
                                               std::string_view arguments) {
  return Execute(command, arguments, options_.command_timeout);
}

absl::StatusOr<std::string> QmpClient::Execute(std::string_view command, std::string_view arguments,
                                               absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  if (!ValidCommandName(command)) {
    return absl::InvalidArgumentError(
        absl::StrCat("qmp on ", address_, ": bad command name \"", AbslView(command), "\""));
  }
  absl::StatusOr<std::string> args = internal::CompactArguments(arguments);
  if (!args.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(command, {}), ": ", args.status().message()));
  }
  const std::string where = Where(command, *args);

  Pending pending;
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    if (!status_.ok()) {
      return absl::Status(status_.code(), absl::StrCat(where, ": ", status_.message()));
    }
    id = next_id_++;
    pending_[id] = &pending;
  }
  std::string line = absl::StrCat("{\"execute\":\"", AbslView(command), "\"");
  if (!args->empty()) absl::StrAppend(&line, ",\"arguments\":", *args);
  absl::StrAppend(&line, ",\"id\":", id, "}\n");

  // WriteLine sends nothing once the deadline has passed: QEMU must not carry out a command
  // whose caller is told it timed out.
  absl::Status written = WriteLine(line, deadline);
  absl::MutexLock lock(&mu_);
  if (written.ok()) AwaitReply(pending, deadline);
  if (!pending.done) {
    pending_.erase(id);
    if (!written.ok())
      return absl::Status(written.code(), absl::StrCat(where, ": ", written.message()));
    return absl::DeadlineExceededError(
        absl::StrCat(where, ": timed out after ", absl::FormatDuration(timeout)));
  }
  if (!pending.result.ok()) {
    const absl::Status& s = pending.result.status();
    return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
  }
  return std::move(pending.result);
}

absl::Status QmpClient::WriteLine(const std::string& line, absl::Time deadline) {
  // Another caller may be writing (and waiting for the socket, up to its own deadline): wait for
  // it only until ours.
  {
    absl::MutexLock lock(&write_mu_);
    auto free = [this]() ABSL_SHARED_LOCKS_REQUIRED(write_mu_) { return !writing_; };
    if (!write_mu_.AwaitWithDeadline(absl::Condition(&free), deadline)) {
      return absl::DeadlineExceededError(
          "timed out waiting to send (another command is being sent)");
    }
    writing_ = true;
  }
  struct Done {
    QmpClient& client;
    ~Done() {
      absl::MutexLock lock(&client.write_mu_);
      client.writing_ = false;
    }
  } done{*this};
  if (absl::Now() >= deadline) return absl::DeadlineExceededError("timed out before sending");
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      int r = poll(&p, 1, PollMillis(deadline));
      if (r > 0 || (r < 0 && errno == EINTR)) continue;
      if (r == 0) {
        // Half a command on the wire would garble the next one: give the connection up.
        absl::Status s = absl::DeadlineExceededError("QEMU stopped reading commands");
        if (sent > 0)
          Fail(absl::UnavailableError(
              absl::StrCat("QMP connection to ", address_, " dropped: a command write timed out")));
        return s;
      }
    }
    absl::Status s = absl::UnavailableError(
        absl::StrCat("QMP connection to ", address_, " lost while sending: ", ErrnoText(errno)));
    Fail(s);
    return s;
  }
  return absl::OkStatus();
}

// Reading: one thread at a time holds the read token (`reading_`) and is the only one that
// receives from the socket and handles what arrives. A command's caller takes the token while it
// waits and reads its reply itself, as a plain blocking client would: no hand-off between
// threads on the round trip. The background thread watches the socket too, and takes the token
// only to read what arrives while no caller reads (events, or replies to callers that have
// not started waiting yet). It polls only while no caller holds the token, and a caller that
// takes the token kicks it out of its poll, so a reply wakes one thread, the caller.
void QmpClient::BackgroundReader() {
  absl::MutexLock lock(&mu_);
  auto may_poll = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !status_.ok() || !reading_; };
  while (true) {
    mu_.Await(absl::Condition(&may_poll));
    if (!status_.ok()) return;
    background_polling_ = true;
    mu_.Unlock();
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int r = poll(p, wake_fd_ >= 0 ? 2 : 1, -1);
    const int poll_errno = errno;
    if (r > 0 && wake_fd_ >= 0 && (p[1].revents & POLLIN) != 0) {
      uint64_t kicks;
      (void)!read(wake_fd_, &kicks, sizeof(kicks));
    }
    if (r < 0 && poll_errno != EINTR) {
      Fail(absl::UnavailableError(
          absl::StrCat("QMP on ", address_, ": poll: ", ErrnoText(poll_errno))));
    }
    mu_.Lock();
    background_polling_ = false;
    if (!status_.ok()) return;
    if (r <= 0 || p[0].revents == 0 || reading_) continue;
    // What arrived while no caller reads: events, or early replies.
    reading_ = true;
    mu_.Unlock();
    ReadOnce();
    mu_.Lock();
    reading_ = false;
  }
}

void QmpClient::AwaitReply(const Pending& pending, absl::Time deadline) {
  while (!pending.done && absl::Now() < deadline) {
    if (!reading_) {
      reading_ = true;
      const bool kick = background_polling_ && wake_fd_ >= 0;
      mu_.Unlock();
      if (kick) {
        const uint64_t one = 1;
        (void)!write(wake_fd_, &one, sizeof(one));
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, PollMillis(deadline)) > 0) ReadOnce();
      mu_.Lock();
      reading_ = false;
      continue;
    }
    auto ready = [this, &pending]()
                     ABSL_SHARED_LOCKS_REQUIRED(mu_) { return pending.done || !reading_; };
    mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  }
}

void QmpClient::ReadOnce() {
  ssize_t n = recv(fd_, read_buffer_.data(), read_buffer_.size(), MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    std::string why = n == 0 ? "closed by QEMU" : ErrnoText(errno);
    if (framer_->partial_bytes() > 0) {
      absl::StrAppend(&why, " in the middle of a message (", framer_->partial_bytes(),
                      " bytes received)");
    }
    Fail(absl::UnavailableError(absl::StrCat("QMP connection to ", address_, " lost: ", why)));
    return;
  }
  std::vector<std::string> lines;
  absl::Status s = framer_->Feed(std::string_view(read_buffer_.data(), n), &lines);
  for (const std::string& line : lines) {
    absl::Status handled = HandleLine(line);
    if (!handled.ok()) {
      s = handled;
      break;
    }
  }
  if (!s.ok()) {
    Fail(absl::UnavailableError(
        absl::StrCat("QMP connection to ", address_, " dropped: ", s.message())));
  }
}

absl::Status QmpClient::HandleLine(const std::string& line) {
  if (line.find_first_not_of(" \t") == std::string::npos) return absl::OkStatus();
  absl::StatusOr<QmpMessage> parsed = internal::ParseQmpMessage(line);
  if (!parsed.ok()) return parsed.status();
  QmpMessage& m = *parsed;
  switch (m.kind) {
    case QmpMessage::Kind::kGreeting: {
      absl::MutexLock lock(&mu_);
      if (greeted_) return absl::InvalidArgumentError("a second QMP greeting");
      version_ = std::move(m.version);
      greeted_ = true;
      return absl::OkStatus();
    }
    case QmpMessage::Kind::kEvent: {
      QmpEvent event{std::move(m.event), std::move(m.json), m.timestamp};
      absl::MutexLock lock(&handlers_mu_);
      for (auto& [id, h] : handlers_) {
        if (h.on_event) h.on_event(event);
      }
      return absl::OkStatus();
    }
    case QmpMessage::Kind::kReturn:
    case QmpMessage::Kind::kError: {
      absl::MutexLock lock(&mu_);
      if (!greeted_) return absl::InvalidArgumentError("a reply before the QMP greeting");
      auto it = m.id.has_value() ? pending_.find(*m.id) : pending_.end();
      if (it == pending_.end()) {
        // A reply to a command that timed out, or to one QEMU could not parse (no id).
        LOG(WARNING) << "QMP on " << address_
                     << ": dropping a reply to no pending command: " << line.substr(0, 200);
        return absl::OkStatus();
      }
      Pending* p = it->second;
      pending_.erase(it);
      if (m.kind == QmpMessage::Kind::kReturn) {
        p->result = std::move(m.json);
      } else {
        p->result = ErrorFromQmp(m.error_class, m.error_desc);
      }
      p->done = true;
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

void QmpClient::Fail(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (!status_.ok()) return;
    status_ = status;
    for (auto& [id, p] : pending_) {
      p->result = status;
      p->done = true;
    }
    pending_.clear();
  }
  // Nothing more goes over this connection; whoever is polling it wakes up.
  shutdown(fd_, SHUT_RDWR);
  absl::MutexLock lock(&handlers_mu_);
  for (auto& [id, h] : handlers_) {
    if (h.on_close) h.on_close(status);
  }
}

QmpClient::Subscription QmpClient::Subscribe(EventHandler on_event, CloseHandler on_close) {
  absl::MutexLock lock(&handlers_mu_);
  uint64_t id = next_subscription_++;
  handlers_[id] = Handlers{std::move(on_event), std::move(on_close)};
  return Subscription(this, id);
}

void QmpClient::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&handlers_mu_);
  handlers_.erase(id);
}

QmpClient::Subscription::Subscription(Subscription&& other) noexcept
    : client_(std::exchange(other.client_, nullptr)), id_(other.id_) {}

QmpClient::Subscription& QmpClient::Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    if (client_ != nullptr) client_->Unsubscribe(id_);
    client_ = std::exchange(other.client_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

QmpClient::Subscription::~Subscription() {
  if (client_ != nullptr) client_->Unsubscribe(id_);
}

EventQueue::EventQueue(QmpClient& client, std::vector<std::string> names)
    : names_(std::move(names)) {
  subscription_ = client.Subscribe([this](const QmpEvent& e) { Push(e); },
                                   [this](const absl::Status& s) { Close(s); });
  if (absl::Status s = client.status(); !s.ok()) Close(s);
}

void EventQueue::Push(const QmpEvent& event) {
  if (!names_.empty() && std::find(names_.begin(), names_.end(), event.name) == names_.end()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  if (events_.size() == kMaxEvents) events_.pop_front();
  events_.push_back(event);
}

void EventQueue::Close(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (closed_.ok()) closed_ = status;
}

absl::StatusOr<QmpEvent> EventQueue::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]()
                   ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !events_.empty() || !closed_.ok(); };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (!events_.empty()) {
    QmpEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
  }
  if (!closed_.ok()) return closed_;
  return absl::DeadlineExceededError(
      absl::StrCat("no QMP event within ", absl::FormatDuration(timeout)));
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace autoscale::neonvm::qmp
