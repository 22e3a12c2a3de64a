// The QMP client against a scripted peer on a real socket: negotiation, matching replies to
// commands, events, errors, timeouts, connection loss, and bad input (garbage, truncated and
// oversized messages, deep nesting). Real QEMU is in qmp_qemu_test.cc.
#include "neonvm/qmp/qmp_client.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale::neonvm::qmp {
namespace {

constexpr char kGreeting[] =
    R"({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}})"
    "\n";

// One accepted connection of the scripted peer.
class Peer {
 public:
  explicit Peer(int fd) : fd_(fd) {}
  ~Peer() { Close(); }

  void Send(const std::string& s) {
    size_t sent = 0;
    while (sent < s.size()) {
      ssize_t n = send(fd_, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += n;
    }
  }
  // The next line from the client, "" when it closed.
  std::string ReadLine() {
    while (true) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      char b[4096];
      ssize_t n = recv(fd_, b, sizeof(b), 0);
      if (n <= 0) return "";
      buf_.append(b, n);
    }
  }
  // The id of a command line the client sent.
  static uint64_t IdOf(const std::string& line) {
    size_t at = line.rfind("\"id\":");
    uint64_t id = 0;
    EXPECT_NE(at, std::string::npos) << line;
    EXPECT_TRUE(absl::SimpleAtoi(line.substr(at + 5, line.size() - at - 6), &id)) << line;
    return id;
  }
  void Reply(const std::string& line, const std::string& value) {
    Send(absl::StrCat(R"({"return": )", value, R"(, "id": )", IdOf(line), "}\n"));
  }
  // Greeting and capability negotiation, as QEMU does them.
  void Handshake() {
    Send(kGreeting);
    std::string caps = ReadLine();
    EXPECT_TRUE(absl::StrContains(caps, R"("execute":"qmp_capabilities")")) << caps;
    Reply(caps, "{}");
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  std::string buf_;
};

// Listens on a unix socket (or TCP on 127.0.0.1) and runs `script` on the first connection.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(Peer&)> script, bool tcp = false) {
    if (tcp) {
      listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      socklen_t len = sizeof(a);
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
      address_ = absl::StrCat("tcp:127.0.0.1:", ntohs(a.sin_port));
    } else {
      listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::string path = dir_.path() + "/qmp.sock";
      std::strcpy(a.sun_path, path.c_str());
      bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      address_ = "unix:" + path;
    }
    listen(listen_fd_, 4);
    thread_ = std::thread([this, script = std::move(script)] {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      Peer peer(fd);
      script(peer);
    });
  }
  ~ScriptedServer() {
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  const std::string& address() const { return address_; }

 private:
  testing::TempDir dir_{"qmpt"};
  std::string address_;
  int listen_fd_ = -1;
  std::thread thread_;
};

QmpClientOptions Fast() {
  QmpClientOptions o;
  o.connect_timeout = absl::Seconds(5);
  o.command_timeout = absl::Seconds(5);
  return o;
}

TEST(QmpClient, NegotiatesAndReadsTheVersion) {
  ScriptedServer server([](Peer& p) {
    p.Handshake();
    p.ReadLine();  // until the client goes
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->version().major, 10);
  EXPECT_EQ((*client)->version().minor, 0);
  EXPECT_EQ((*client)->version().micro, 2);
  EXPECT_EQ((*client)->version().package, "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1");
  EXPECT_TRUE((*client)->status().ok());
}

TEST(QmpClient, WorksOverTcp) {
  ScriptedServer server(
      [](Peer& p) {
        p.Handshake();
        std::string line = p.ReadLine();
        p.Reply(line, R"({"status": "prelaunch", "running": false})");
        p.ReadLine();
      },
      /*tcp=*/true);
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  auto r = (*client)->Execute("query-status");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, R"({"status":"prelaunch","running":false})");
}

TEST(QmpClient, SendsArgumentsAndMatchesRepliesById) {
  // Two commands in flight; the peer answers the second first.
  ScriptedServer server([](Peer& p) {
    p.Handshake();
    std::string a = p.ReadLine();
    std::string b = p.ReadLine();
    EXPECT_NE(Peer::IdOf(a), Peer::IdOf(b));
    auto value_of = [](const std::string& line) {
      return absl::StrContains(line, R"("arguments":{"n":1})") ? "\"one\"" : "\"two\"";
    };
    p.Reply(b, value_of(b));
    p.Reply(a, value_of(a));
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::string> one, two;
  std::thread t([&] { one = (*client)->Execute("echo", R"({ "n" : 1 })"); });
  two = (*client)->Execute("echo", R"({"n": 2})");
  t.join();
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(*one, "\"one\"");
  EXPECT_EQ(*two, "\"two\"");
}

TEST(QmpClient, ManyConcurrentCallersEachGetTheirOwnReply) {
  constexpr int kThreads = 8, kCalls = 200;
  ScriptedServer server([](Peer& p) {
    p.Handshake();
    for (std::string line = p.ReadLine(); !line.empty(); line = p.ReadLine()) {
      // Return the caller's own argument, so a mix-up shows.
      size_t at = line.find(R"("arguments":{"v":)");
      std::string v = line.substr(at + 17, line.find('}', at) - at - 17);
      p.Reply(line, v);
    }
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        int v = t * 100000 + i;
        auto r = (*client)->Execute("echo", absl::StrCat(R"({"v":)", v, "}"));
        if (!r.ok() || *r != absl::StrCat(v)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(QmpClient, DeliversEventsToSubscribersAndQueues) {
  absl::Notification subscribed;
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    subscribed.WaitForNotification();
    p.Send(
        R"({"timestamp": {"seconds": 1795830556, "microseconds": 282149}, "event": "ACPI_DEVICE_OST", "data": {"info": {"device": "cpu1", "source": 1, "status": 0, "slot": "1", "slot-type": "CPU"}}})"
        "\n");
    p.Send(R"({"timestamp": {"seconds": 1795830557, "microseconds": 0}, "event": "RESUME"})"
           "\n");
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  EventQueue ost(**client, {"ACPI_DEVICE_OST"});
  EventQueue all(**client);
  std::atomic<int> seen{0};
  QmpClient::Subscription sub = (*client)->Subscribe([&](const QmpEvent&) { ++seen; });
  subscribed.Notify();

  auto e = ost.Next(absl::Seconds(5));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->name, "ACPI_DEVICE_OST");
  EXPECT_EQ(e->data,
            R"({"info":{"device":"cpu1","source":1,"status":0,"slot":"1","slot-type":"CPU"}})");
  EXPECT_EQ(e->timestamp, absl::FromUnixSeconds(1795830556) + absl::Microseconds(282149));
  // The filtered queue does not see RESUME.
  EXPECT_EQ(ost.Next(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded);

  auto first = all.Next(absl::Seconds(5));
  auto second = all.Next(absl::Seconds(5));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->name, "ACPI_DEVICE_OST");
  EXPECT_EQ(second->name, "RESUME");
  EXPECT_EQ(second->data, "{}");
  EXPECT_EQ(seen.load(), 2);
}

// Events that come in while a caller reads its reply reach subscribers too, in order.
TEST(QmpClient, DeliversEventsThatArriveWithAReply) {
  ScriptedServer server([](Peer& p) {
    p.Handshake();
    std::string line = p.ReadLine();
    p.Send(R"({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}})"
           "\n");
    p.Send(absl::StrCat(R"({"event": "RESUME", "timestamp": {"seconds": 2, "microseconds": 0}})",
                        "\n", R"({"return": {}, "id": )", Peer::IdOf(line), "}\n"));
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  EventQueue events(**client);
  ASSERT_TRUE((*client)->Execute("cont").ok());
  auto stop = events.Next(absl::Seconds(5));
  auto resume = events.Next(absl::Seconds(5));
  ASSERT_TRUE(stop.ok() && resume.ok());
  EXPECT_EQ(stop->name, "STOP");
  EXPECT_EQ(resume->name, "RESUME");
}

TEST(QmpClient, QmpErrorsBecomeStatusesNamingCommandAndSocket) {
  ScriptedServer server([](Peer& p) {
    p.Handshake();
    std::string line = p.ReadLine();
    p.Send(absl::StrCat(
        R"({"id": )", Peer::IdOf(line),
        R"(, "error": {"class": "GenericError", "desc": "Invalid CPU socket-id: 99 must be in range 0:0"}})",
        "\n"));
    line = p.ReadLine();
    p.Send(absl::StrCat(
        R"({"id": )", Peer::IdOf(line),
        R"(, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}})",
        "\n"));
    line = p.ReadLine();
    p.Send(absl::StrCat(
        R"({"id": )", Peer::IdOf(line),
        R"(, "error": {"class": "DeviceNotFound", "desc": "Device 'cpu9' not found"}})", "\n"));
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  auto r = (*client)->Execute("device_add",
                              R"({"driver":"qemu64-x86_64-cpu","id":"cpu3","socket-id":99})");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(),
            absl::StrCat("qmp device_add cpu3 on ", server.address(),
                         ": GenericError: Invalid CPU socket-id: 99 must be in range 0:0"));
  EXPECT_EQ((*client)->Execute("nope").status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ((*client)->Execute("device_del", R"({"id":"cpu9"})").status().code(),
            absl::StatusCode::kNotFound);
  // An error reply does not end the connection.
  EXPECT_TRUE((*client)->status().ok());
}

TEST(QmpClient, TimesOutAndDropsTheLateReply) {
  absl::Notification timed_out;
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    std::string slow = p.ReadLine();
    timed_out.WaitForNotification();
    p.Reply(slow, "\"late\"");
    std::string next = p.ReadLine();
    p.Reply(next, "\"fresh\"");
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  auto r = (*client)->Execute("slow", {}, absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "qmp slow on unix:")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "timed out after 100ms")) << r.status();
  timed_out.Notify();
  auto next = (*client)->Execute("next");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, "\"fresh\"");
}

// A command whose caller has no time left is not sent at all: QEMU must not carry out a
// device_add whose caller was already told it timed out.
TEST(QmpClient, SendsNothingWhenNoTimeIsLeft) {
  std::string first;
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    first = p.ReadLine();
    p.Reply(first, "{}");
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  auto late =
      (*client)->Execute("device_add", R"({"driver":"x","id":"cpu3"})", absl::ZeroDuration());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  auto next = (*client)->Execute("query-status");
  ASSERT_TRUE(next.ok()) << next.status();
  client->reset();
  // The first command QEMU saw is the second one.
  EXPECT_TRUE(absl::StrContains(first, "query-status")) << first;
}

// A caller waiting for another caller's write keeps its own deadline: it is not held until the
// other's (longer) deadline passes.
TEST(QmpClient, AWriterWaitingBehindAnotherKeepsItsOwnDeadline) {
  absl::Notification release;
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    release.WaitForNotification();  // reads nothing meanwhile: the client's writes block
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  // Far more than a socket buffer holds.
  const std::string big = absl::StrCat(R"({"blob":")", std::string(2 << 20, 'x'), R"("})");
  absl::Notification big_done;
  std::thread blocked([&] {
    (void)(*client)->Execute("big", big, absl::Seconds(60));
    big_done.Notify();
  });
  absl::SleepFor(absl::Seconds(1));  // let it take the write lock (ordering, not an assertion)
  absl::Notification small_done;
  absl::StatusOr<std::string> small;
  std::thread waiting([&] {
    small = (*client)->Execute("small", {}, absl::Milliseconds(100));
    small_done.Notify();
  });
  // The small command ends on its own deadline, while the big one still waits for its.
  EXPECT_TRUE(small_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_FALSE(big_done.HasBeenNotified());
  release.Notify();  // the peer hangs up: the big command fails
  blocked.join();
  waiting.join();
  EXPECT_EQ(small.status().code(), absl::StatusCode::kDeadlineExceeded) << small.status();
}

// An infinite timeout waits for the reply (the poll timeout derived from it must not overflow).
TEST(QmpClient, AnInfiniteTimeoutWaitsForTheReply) {
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    std::string line = p.ReadLine();
    absl::SleepFor(absl::Milliseconds(50));
    p.Reply(line, "\"slow\"");
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  auto r = (*client)->Execute("slow", {}, absl::InfiniteDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "\"slow\"");
}

TEST(QmpClient, ConnectionLossFailsEveryPendingCommandAtOnce) {
  constexpr int kPending = 4;
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    for (int i = 0; i < kPending; ++i) p.ReadLine();
    p.Close();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  EventQueue events(**client);
  std::vector<absl::Status> results(kPending);
  std::vector<std::thread> threads;
  for (int i = 0; i < kPending; ++i) {
    threads.emplace_back([&, i] {
      results[i] = (*client)->Execute("query-status", {}, absl::Seconds(60)).status();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) {
    // Unavailable, not DeadlineExceeded: they failed when the connection went, not at 60 s.
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "lost: closed by QEMU")) << s;
  }
  EXPECT_EQ((*client)->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(events.Next(absl::Seconds(5)).status().code(), absl::StatusCode::kUnavailable);
  // Later commands fail at once too.
  EXPECT_EQ((*client)->Execute("query-status").status().code(), absl::StatusCode::kUnavailable);
}

// The peer's bad input ends the connection with an error naming the problem.
struct BadInput {
  const char* name;
  std::string bytes;
  bool close_after;
  const char* expected;
};

class QmpClientBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(QmpClientBadInput, FailsThePendingCommandWithAClearError) {
  const BadInput& bad = GetParam();
  ScriptedServer server([&](Peer& p) {
    p.Handshake();
    p.ReadLine();
    p.Send(bad.bytes);
    if (bad.close_after) p.Close();
    p.ReadLine();
  });
  QmpClientOptions o = Fast();
  o.max_message_bytes = 64 << 10;
  auto client = QmpClient::Connect(server.address(), o);
  ASSERT_TRUE(client.ok()) << client.status();
  auto r = (*client)->Execute("query-status", {}, absl::Seconds(30));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), bad.expected)) << r.status();
  EXPECT_EQ((*client)->status().code(), absl::StatusCode::kUnavailable);
}

INSTANTIATE_TEST_SUITE_P(
    Inputs, QmpClientBadInput,
    ::testing::Values(
        BadInput{"Garbage", "\x01\xff garbage {{{\n", false, "malformed QMP message"},
        BadInput{"NotAnObject", "[1, 2, 3]\n", false, "not a JSON object"},
        BadInput{"UnknownShape",
                 R"({"hello": "world"})"
                 "\n",
                 false, "neither greeting, reply nor event"},
        BadInput{"ErrorWithoutDesc",
                 R"({"id": 2, "error": {"class": 5}})"
                 "\n",
                 false, "error without class and desc"},
        BadInput{"SecondGreeting", kGreeting, false, "a second QMP greeting"},
        BadInput{"Oversized", std::string(100 << 10, 'x'), false, "longer than 65536 bytes"},
        BadInput{"Truncated", R"({"return": {"status": "runn)", true,
                 "in the middle of a message (27 bytes received)"},
        BadInput{"DeepNesting", std::string(30000, '[') + std::string(30000, ']') + "\n", false,
                 "nested deeper than 64"}),
    [](const ::testing::TestParamInfo<BadInput>& info) { return info.param.name; });

TEST(QmpClient, RefusesAPeerThatDoesNotGreet) {
  ScriptedServer server([](Peer& p) {
    p.Send("{\"return\": {}}\n");
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), "a reply before the QMP greeting"))
      << client.status();
}

TEST(QmpClient, TimesOutWaitingForAGreeting) {
  absl::Notification done;
  ScriptedServer server([&](Peer&) { done.WaitForNotification(); });
  QmpClientOptions o;
  o.connect_timeout = absl::Milliseconds(200);
  auto client = QmpClient::Connect(server.address(), o);
  done.Notify();
  EXPECT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded) << client.status();
}

TEST(QmpClient, RefusesBadAddressesAndArguments) {
  EXPECT_EQ(QmpClient::Connect("vsock:3").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QmpClient::Connect("tcp:nohostport").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QmpClient::Connect("unix:" + std::string(200, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto missing = QmpClient::Connect("unix:/nonexistent/qmp.sock");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "No such file")) << missing.status();

  ScriptedServer server([](Peer& p) {
    p.Handshake();
    p.ReadLine();
  });
  auto client = QmpClient::Connect(server.address(), Fast());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->Execute("device_add", "[1]").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*client)->Execute("device_add", "{\"id\": ").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*client)->Execute("bad name\"").status().code(), absl::StatusCode::kInvalidArgument);
  // None of that reached the peer or broke the connection.
  EXPECT_TRUE((*client)->status().ok());
}

TEST(JsonQuote, EscapesWhatJsonNeeds) {
  EXPECT_EQ(JsonQuote("cpu1"), "\"cpu1\"");
  EXPECT_EQ(JsonQuote("a\"b\\c\nd\x01"), R"("a\"b\\c\nd\u0001")");
}

}  // namespace
}  // namespace autoscale::neonvm::qmp
