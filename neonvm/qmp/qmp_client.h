// A client for QEMU's machine protocol (QMP) over a unix or TCP socket: it reads the greeting,
// negotiates capabilities, matches replies to commands by id, hands asynchronous events to
// subscribers, bounds every command by a timeout, and fails every pending command at once when
// the connection is lost. Bad input from the socket (malformed JSON, a truncated or oversized
// message) closes the connection with an error; it never crashes or hangs the caller.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<QmpClient> qmp, QmpClient::Connect("unix:/run/vm7/qmp.sock"));
//   EventQueue events(*qmp, {"ACPI_DEVICE_OST"});      // collect before acting: no race
//   ASSIGN_OR_RETURN(std::string reply, qmp->Execute("device_add", R"({"driver": ...})"));
//   ASSIGN_OR_RETURN(QmpEvent ost, events.Next(absl::Seconds(5)));
//
// Thread-safe: any number of threads may call Execute at once. One thread at a time reads the
// socket: a caller waiting for its reply (handing other callers theirs), or, while none is
// reading, a background thread (events).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace autoscale::neonvm::qmp {

namespace internal {
class LineFramer;
}

// QEMU's version, from the greeting.
struct QmpVersion {
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string package;
};

// An asynchronous event ("SHUTDOWN", "ACPI_DEVICE_OST", "MIGRATION", ...).
struct QmpEvent {
  std::string name;
  // The event's "data" member as compact JSON text ("{}" when the event has none).
  std::string data;
  // When QEMU emitted it.
  absl::Time timestamp;
};

struct QmpClientOptions {
  // Bounds connecting, the greeting and capability negotiation together.
  absl::Duration connect_timeout = absl::Seconds(5);
  // The timeout of Execute calls that do not give their own.
  absl::Duration command_timeout = absl::Seconds(10);
  // The longest message accepted from QEMU. query-qmp-schema, the largest reply, is ~200 KiB.
  size_t max_message_bytes = 4 << 20;
};

class QmpClient {
 public:
  using EventHandler = std::function<void(const QmpEvent&)>;
  using CloseHandler = std::function<void(const absl::Status&)>;

  // Connects to "unix:/path", a bare "/path", or "tcp:host:port"; reads the greeting and enables
  // the command mode (qmp_capabilities). Errors are Unavailable (nothing listening, connection
  // lost), DeadlineExceeded, or InvalidArgument (a bad address or a peer that does not speak QMP).
  static absl::StatusOr<std::unique_ptr<QmpClient>> Connect(std::string_view address,
                                                            const QmpClientOptions& options = {});

  // Closes the connection; pending commands fail with Cancelled.
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs `command` with `arguments` (a JSON object, or empty for none) and returns QEMU's
  // "return" value as compact JSON text ("{}" for most commands). Errors say which command, on
  // which socket, and what went wrong:
  //   - a QMP error reply: FailedPrecondition (GenericError and the rest), NotFound
  //     (DeviceNotFound), Unimplemented (CommandNotFound), with QEMU's class and description;
  //   - DeadlineExceeded after `timeout` (a late reply is discarded);
  //   - Unavailable once the connection is lost (every pending command fails at once);
  //   - InvalidArgument for arguments that are not a JSON object.
  absl::StatusOr<std::string> Execute(std::string_view command, std::string_view arguments = {});
  absl::StatusOr<std::string> Execute(std::string_view command, std::string_view arguments,
                                      absl::Duration timeout);

  // Delivers every event received from now on to `on_event`, and the error that ends the
  // connection to `on_close` (optional), until the returned Subscription is destroyed. Handlers run
  // on whichever thread reads the socket: they must be quick and must not call into this client.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(Subscription&& other) noexcept;
    Subscription& operator=(Subscription&& other) noexcept;
    ~Subscription();

   private:
    friend class QmpClient;
    Subscription(QmpClient* client, uint64_t id) : client_(client), id_(id) {}
    QmpClient* client_ = nullptr;
    uint64_t id_ = 0;
  };
  [[nodiscard]] Subscription Subscribe(EventHandler on_event, CloseHandler on_close = nullptr);

  // OK while connected; otherwise why the connection ended.
  absl::Status status() const;
  // The address given to Connect.
  const std::string& address() const { return address_; }
  const QmpVersion& version() const { return version_; }

 private:
  struct Pending;
  struct Handlers {
    EventHandler on_event;
    CloseHandler on_close;
  };

  QmpClient(int fd, std::string address, const QmpClientOptions& options);
  absl::Status Handshake();
  void BackgroundReader();
  // Waits until `pending` is done or the deadline passes, reading the socket while no other
  // thread does.
  void AwaitReply(const Pending& pending, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Receives what is there and handles it; only the holder of the read token calls it.
  void ReadOnce();
  absl::Status HandleLine(const std::string& line);
  void Fail(const absl::Status& status);
  absl::Status WriteLine(const std::string& line, absl::Time deadline);
  void Unsubscribe(uint64_t id);
  std::string Where(std::string_view command, std::string_view arguments) const;

  const int fd_;
  // Wakes the background reader out of its poll when a caller takes the read token, so that a
  // reply wakes only the caller (an eventfd; -1 if none could be made).
  const int wake_fd_;
  const std::string address_;
  const QmpClientOptions options_;
  QmpVersion version_;  // Written once, when the greeting arrives, before Connect returns.

  // Used only by the thread holding the read token.
  std::unique_ptr<internal::LineFramer> framer_;
  std::vector<char> read_buffer_;

  // Protects the connection state, the commands waiting for replies, and the read token.
  mutable absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool greeted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Pending*> pending_ ABSL_GUARDED_BY(mu_);
  // The read token: a thread is reading the socket.
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  // The background reader is polling the socket (or about to).
  bool background_polling_ ABSL_GUARDED_BY(mu_) = false;

  // Serializes writes, so the lines of concurrent commands never interleave: one caller at a
  // time writes (`writing_`); the others wait for it, each until its own deadline.
  absl::Mutex write_mu_;
  bool writing_ ABSL_GUARDED_BY(write_mu_) = false;

  // Protects the subscribers; held while handlers run, so a Subscription's destructor returns
  // only when its handlers are no longer running.
  absl::Mutex handlers_mu_;
  uint64_t next_subscription_ ABSL_GUARDED_BY(handlers_mu_) = 1;
  std::map<uint64_t, Handlers> handlers_ ABSL_GUARDED_BY(handlers_mu_);

  std::thread reader_;
};

// Collects the events of one client (all, or only the names given) from its construction on, so
// a caller can act and then wait for what its action causes without missing an event. Keeps at
// most the newest 4096 events.
class EventQueue {
 public:
  explicit EventQueue(QmpClient& client, std::vector<std::string> names = {});

  // The oldest event not yet returned. DeadlineExceeded when none arrives in `timeout`;
  // Unavailable when the connection is lost and no event is left.
  absl::StatusOr<QmpEvent> Next(absl::Duration timeout);

 private:
  static constexpr size_t kMaxEvents = 4096;
  void Push(const QmpEvent& event);
  void Close(const absl::Status& status);

  const std::vector<std::string> names_;
  absl::Mutex mu_;
  std::deque<QmpEvent> events_ ABSL_GUARDED_BY(mu_);
  absl::Status closed_ ABSL_GUARDED_BY(mu_);
  // Last: unsubscribes first on destruction, before the queue goes.
  QmpClient::Subscription subscription_;
};

// `s` as a JSON string literal, quoted and escaped: for building the arguments of a command.
std::string JsonQuote(std::string_view s);

}  // namespace autoscale::neonvm::qmp
