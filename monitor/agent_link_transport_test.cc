// The monitor protocol's two transports give the same answers: two identical monitors (a manual
// clock, memory samples from the test, /proc from a fixture), each behind an AgentLink, one
// reached through the gRPC server and client over loopback, the other through the in-process
// connector. The same calls, refusals and monitor-initiated messages must come out the same;
// errors with the same code and (the in-process client names the gRPC address) the same text.
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "autoscale/api/monitor.grpc.pb.h"
#include "autoscale/base/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/rpc/monitor/grpc_client.h"
#include "autoscale/rpc/monitor/grpc_server.h"
#include "autoscale/rpc/monitor/in_process.h"
#include "autoscale/rpc/server.h"
#include "autoscale/testing/temp_dir.h"
#include "autoscale/testing/test_ca.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lfc/resizer.h"
#include "monitor/agent_link.h"

namespace autoscale::monitor {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using rpc::monitor::MonitorClient;

api::v1::Resources Memory(int64_t bytes) {
  api::v1::Resources r;
  r.set_milli_cpu(1000);
  r.set_memory_bytes(bytes);
  return r;
}

// A /proc with fixed loadavg and meminfo.
std::string FixtureProc() {
  const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/proc";
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/loadavg") << "1.50 0.75 0.20 2/300 4000\n";
  std::ofstream(dir + "/meminfo") << "MemTotal: 1000000 kB\nMemAvailable: 600000 kB\n"
                                     "Cached: 200000 kB\n";
  return dir;
}

// What an agent received on its own callbacks.
class Received {
 public:
  MonitorClient::Callbacks Callbacks() {
    return {.on_metrics =
                [this](const api::v1::Metrics& m) {
                  absl::MutexLock l(&mu_);
                  metrics_.push_back(m);
                },
            .on_upscale_request =
                [this](const api::v1::UpscaleRequest& r) {
                  absl::MutexLock l(&mu_);
                  upscales_.push_back(r);
                },
            .on_closed =
                [this](const absl::Status& s) {
                  absl::MutexLock l(&mu_);
                  closed_ = s;
                }};
  }
  // Waits (up to 10 s) for the first metrics message.
  std::optional<api::v1::Metrics> FirstMetrics() {
    absl::MutexLock l(&mu_);
    auto have = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !metrics_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&have), absl::Seconds(10))) return std::nullopt;
    return metrics_.front();
  }
  std::optional<api::v1::UpscaleRequest> FirstUpscale() {
    absl::MutexLock l(&mu_);
    auto have = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !upscales_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&have), absl::Seconds(10))) return std::nullopt;
    return upscales_.front();
  }
  std::optional<absl::Status> Closed() {
    absl::MutexLock l(&mu_);
    auto have = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_.has_value(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&have), absl::Seconds(10))) return std::nullopt;
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<api::v1::Metrics> metrics_ ABSL_GUARDED_BY(mu_);
  std::vector<api::v1::UpscaleRequest> upscales_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
};

// One monitor with its agent link; its memory usage is what the test sets.
struct Side {
  explicit Side(const std::string& proc,
                AgentLinkOptions options = {.metrics_interval = absl::Hours(1)})
      : metrics(proc),
        monitor(MonitorOptions{}, clock, resizer,
                Monitor::Hooks{
                    .read_stat = [this]() -> absl::StatusOr<cgroup::MemoryStat> { return stat; },
                    .set_threshold = [](int64_t) { return absl::OkStatus(); },
                    .request_upscale =
                        [this](int64_t usage, int64_t threshold) {
                          link.SendUpscaleRequest(usage, threshold);
                        },
                }),
        link(monitor, metrics, options) {}

  void SampleAt(int64_t anon_bytes) {
    stat = {.anon_bytes = anon_bytes};
    monitor.Sample();
    clock.Advance(absl::Milliseconds(100));
  }

  ManualClock clock;
  cgroup::MemoryStat stat;
  lfc::NoopResizer resizer;
  MetricsReader metrics;
  Monitor monitor;
  AgentLink link;
};

class AgentLinkTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string proc = FixtureProc();
    over_grpc_ = std::make_unique<Side>(proc);
    in_process_ = std::make_unique<Side>(proc);
    for (Side* s : {over_grpc_.get(), in_process_.get()}) {
      ASSERT_TRUE(s->monitor.Start(1024 * kMiB).ok());  // threshold 0.85 * 924 MiB
    }
    absl::StatusOr<std::unique_ptr<rpc::Server>> server =
        rpc::monitor::StartGrpcServer(over_grpc_->link, "127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    connector_ = std::make_unique<rpc::monitor::InProcessConnector>(in_process_->link);
  }
  void TearDown() override {
    if (server_) {
      over_grpc_->link.Disconnect();
      server_->Shutdown(absl::Seconds(2));
    }
  }

  // A client on each side, with the same address in their errors.
  struct Clients {
    Received remote_received, local_received;
    std::unique_ptr<MonitorClient> remote, local;
  };
  std::unique_ptr<Clients> Connect() {
    auto c = std::make_unique<Clients>();
    absl::StatusOr<std::unique_ptr<MonitorClient>> remote = rpc::monitor::ConnectGrpc(
        server_->address(), {}, c->remote_received.Callbacks(), absl::Seconds(5));
    absl::StatusOr<std::unique_ptr<MonitorClient>> local = connector_->Connect(
        server_->address(), {}, c->local_received.Callbacks(), absl::Seconds(5));
    EXPECT_TRUE(remote.ok()) << remote.status();
    EXPECT_TRUE(local.ok()) << local.status();
    if (!remote.ok() || !local.ok()) return nullptr;
    c->remote = *std::move(remote);
    c->local = *std::move(local);
    return c;
  }

  // Both sides' answers to `call` must be the same.
  template <typename T>
  void Same(const std::string& what, const absl::StatusOr<T>& remote,
            const absl::StatusOr<T>& local) {
    ++calls_;
    ASSERT_EQ(remote.status().code(), local.status().code())
        << what << ": over gRPC " << remote.status() << ", in process " << local.status();
    if (!remote.ok()) {
      ++errors_;
      EXPECT_EQ(remote.status().message(), local.status().message()) << what;
    } else if constexpr (std::is_base_of_v<google::protobuf::Message, T>) {
      EXPECT_TRUE(MessageDifferencer::Equals(*remote, *local))
          << what << ": " << remote->ShortDebugString() << " vs " << local->ShortDebugString();
    }
  }
  void Same(const std::string& what, const absl::Status& remote, const absl::Status& local) {
    Same<bool>(what, remote.ok() ? absl::StatusOr<bool>(true) : absl::StatusOr<bool>(remote),
               local.ok() ? absl::StatusOr<bool>(true) : absl::StatusOr<bool>(local));
  }
  void Downscale(Clients& c, const std::string& what, int64_t target) {
    Same(what, c.remote->RequestDownscale(Memory(target), absl::Seconds(5)),
         c.local->RequestDownscale(Memory(target), absl::Seconds(5)));
  }
  void Both(const std::function<void(Side&)>& f) {
    f(*over_grpc_);
    f(*in_process_);
  }

  std::unique_ptr<Side> over_grpc_, in_process_;
  std::unique_ptr<rpc::Server> server_;
  std::unique_ptr<rpc::monitor::InProcessConnector> connector_;
  int calls_ = 0, errors_ = 0;
};

TEST_F(AgentLinkTransportTest, SameAnswersErrorsAndMessages) {
  std::unique_ptr<Clients> c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->remote->connected());
  EXPECT_TRUE(c->local->connected());

  // The metrics pushed at once on connecting.
  std::optional<api::v1::Metrics> remote_metrics = c->remote_received.FirstMetrics();
  std::optional<api::v1::Metrics> local_metrics = c->local_received.FirstMetrics();
  ASSERT_TRUE(remote_metrics && local_metrics);
  EXPECT_TRUE(MessageDifferencer::Equals(*remote_metrics, *local_metrics));
  EXPECT_EQ(remote_metrics->memory_usage_bytes(), 400000 * 1024LL + 100 * kMiB);

  Same("health check", c->remote->HealthCheck(absl::Seconds(5)),
       c->local->HealthCheck(absl::Seconds(5)));
  Downscale(*c, "downscale without samples", 512 * kMiB);
  Both([](Side& s) { s.SampleAt(200 * kMiB); });
  Downscale(*c, "downscale with one sample", 512 * kMiB);
  Both([](Side& s) { s.SampleAt(200 * kMiB); });
  Downscale(*c, "downscale below the headroom", 256 * kMiB);
  Downscale(*c, "downscale approved", 768 * kMiB);
  Downscale(*c, "downscale to a negative size", -5);
  Same("upscale notified", c->remote->NotifyUpscale(Memory(1024 * kMiB), absl::Seconds(5)),
       c->local->NotifyUpscale(Memory(1024 * kMiB), absl::Seconds(5)));
  Same("upscale to nothing", c->remote->NotifyUpscale(Memory(0), absl::Seconds(5)),
       c->local->NotifyUpscale(Memory(0), absl::Seconds(5)));
  EXPECT_EQ(over_grpc_->monitor.memory_bytes(), in_process_->monitor.memory_bytes());

  // Usage above the threshold: each monitor asks its agent for more memory.
  Both([](Side& s) {
    for (int i = 0; i < 5; ++i) s.SampleAt(900 * kMiB);
  });
  std::optional<api::v1::UpscaleRequest> remote_up = c->remote_received.FirstUpscale();
  std::optional<api::v1::UpscaleRequest> local_up = c->local_received.FirstUpscale();
  ASSERT_TRUE(remote_up && local_up);
  EXPECT_TRUE(MessageDifferencer::Equals(*remote_up, *local_up))
      << remote_up->ShortDebugString() << " vs " << local_up->ShortDebugString();
  EXPECT_EQ(remote_up->threshold_bytes(), over_grpc_->monitor.threshold_bytes());

  // One agent at a time: a second one ends the first one's session, on both transports.
  std::unique_ptr<Clients> second = Connect();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(c->remote_received.Closed().has_value());
  ASSERT_TRUE(c->local_received.Closed().has_value());
  EXPECT_FALSE(c->remote->connected());
  EXPECT_FALSE(c->local->connected());
  const absl::Status remote_gone = c->remote->HealthCheck(absl::Seconds(5));
  const absl::Status local_gone = c->local->HealthCheck(absl::Seconds(5));
  EXPECT_EQ(remote_gone.code(), absl::StatusCode::kUnavailable) << remote_gone;
  EXPECT_EQ(local_gone.code(), absl::StatusCode::kUnavailable) << local_gone;
  Same("the second agent's health check", second->remote->HealthCheck(absl::Seconds(5)),
       second->local->HealthCheck(absl::Seconds(5)));

  // The monitor shuts down: the agent sees its stream end.
  Both([](Side& s) { s.link.Disconnect(); });
  ASSERT_TRUE(second->remote_received.Closed().has_value());
  ASSERT_TRUE(second->local_received.Closed().has_value());
  EXPECT_EQ(second->remote->HealthCheck(absl::Seconds(5)).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(second->local->HealthCheck(absl::Seconds(5)).code(), absl::StatusCode::kUnavailable);
  // The server ends its side of a stream on its own thread: wait for it (bounded).
  for (Side* s : {over_grpc_.get(), in_process_.get()}) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (s->link.connected() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
    EXPECT_FALSE(s->link.connected());
  }

  EXPECT_EQ(errors_, 3) << "errors compared (of " << calls_ << " calls)";
}

// A peer that opens the stream and never says hello is cut off after the hello timeout instead
// of holding a server thread for good.
TEST(MonitorGrpcServer, APeerThatSendsNoHelloIsCutOff) {
  ManualClock clock;
  lfc::NoopResizer resizer;
  Monitor monitor(MonitorOptions{}, clock, resizer, {});
  MetricsReader metrics;
  AgentLink link(monitor, metrics, {});
  absl::StatusOr<std::unique_ptr<rpc::Server>> server = rpc::monitor::StartGrpcServer(
      link, "127.0.0.1:0", rpc::Security::Plaintext(), absl::Milliseconds(200));
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = api::v1::Monitor::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub->Connect(&context);
  api::v1::MonitorMessage message;
  EXPECT_FALSE(stream->Read(&message));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_FALSE(link.connected());
  (*server)->Shutdown(absl::Seconds(2));
}

// Issue 14's monitor link, attacked: with mutual TLS the monitor admits only a node's agent of
// its trust domain. A plaintext client, a certificate of another CA, and certificates of the
// right CA that are not a node's agent (another VM's, the admin's, none, another trust domain)
// are all refused, and none of them displaces the live agent, which still gets what the monitor
// sends. Another node's agent (the migration target's) is admitted and takes over.
TEST(MonitorLinkTls, OnlyANodesAgentIsAdmittedAndTheLiveOneStays) {
  AUTOSCALE_REQUIRE_OPENSSL();
  testing::TempDir dir("monlink");
  absl::StatusOr<testing::TestCa> ca = testing::TestCa::Create(dir.path() + "/ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<testing::TestCa> other = testing::TestCa::Create(dir.path() + "/other", "other");
  ASSERT_TRUE(other.ok()) << other.status();
  auto issue = [](const testing::TestCa& by, const std::string& file, const std::string& uri) {
    absl::StatusOr<rpc::TlsFiles> f = by.Issue(file, uri);
    EXPECT_TRUE(f.ok()) << f.status();
    absl::StatusOr<rpc::Security> s = rpc::Security::MutualTls(f.value_or(rpc::TlsFiles{}));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.value_or(rpc::Security::Plaintext());
  };
  const rpc::Security vm = issue(*ca, "vm", "spiffe://prod/vm/v1");
  const rpc::Security node_a = issue(*ca, "node-a", "spiffe://prod/node/a");
  const rpc::Security node_b = issue(*ca, "node-b", "spiffe://prod/node/b");

  Side side(
      FixtureProc(),
      {.metrics_interval = absl::Hours(1), .require_agent_identity = true, .trust_domain = "prod"});
  ASSERT_TRUE(side.monitor.Start(1024 * kMiB).ok());
  absl::StatusOr<std::unique_ptr<rpc::Server>> server =
      rpc::monitor::StartGrpcServer(side.link, "127.0.0.1:0", vm);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();

  Received live;
  absl::StatusOr<std::unique_ptr<MonitorClient>> a =
      rpc::monitor::ConnectGrpc(address, {.vm = "v1"}, live.Callbacks(), absl::Seconds(10), node_a);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(live.FirstMetrics().has_value());

  // Refused by the TLS handshake: no client certificate, or one of another CA.
  for (const rpc::Security& s :
       {rpc::Security::Plaintext(), issue(*other, "a", "spiffe://prod/node/a")}) {
    Received r;
    absl::StatusOr<std::unique_ptr<MonitorClient>> c =
        rpc::monitor::ConnectGrpc(address, {}, r.Callbacks(), absl::Seconds(1), s);
    EXPECT_FALSE(c.ok()) << "a client without a certificate of the CA was admitted";
  }
  // Refused by the monitor: the CA signed them, but they are not a node's agent of "prod".
  const std::vector<std::pair<std::string, std::string>> impostors = {
      {"vm-v2", "spiffe://prod/vm/v2"},  // another VM's monitor (or a guest holding its key)
      {"admin", "spiffe://prod/admin"},
      {"elsewhere", "spiffe://staging/node/a"},
      {"none", ""},
  };
  for (const auto& [file, uri] : impostors) {
    Received r;
    absl::StatusOr<std::unique_ptr<MonitorClient>> c = rpc::monitor::ConnectGrpc(
        address, {}, r.Callbacks(), absl::Seconds(10), issue(*ca, file, uri));
    ASSERT_FALSE(c.ok()) << uri << " was admitted";
    EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
    EXPECT_NE(c.status().message().find(uri.empty() ? "a caller without an identity" : uri),
              std::string::npos)
        << c.status();
  }
  // The agent's side: an agent of VM v2 that reached v1's monitor (a wrong address, or a monitor
  // that is not its VM's) refuses it before sending its token, naming both identities.
  {
    Received r;
    absl::StatusOr<std::unique_ptr<MonitorClient>> c = rpc::monitor::ConnectGrpc(
        address, {.vm = "v2", .token = "v2's token"}, r.Callbacks(), absl::Seconds(10), node_a);
    ASSERT_FALSE(c.ok()) << "the agent of v2 took v1's monitor";
    EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
    EXPECT_NE(c.status().message().find("spiffe://prod/vm/v1"), std::string::npos) << c.status();
    EXPECT_NE(c.status().message().find("spiffe://prod/vm/v2"), std::string::npos) << c.status();
  }
  // A node certificate where a monitor's should be: refused the same way.
  {
    absl::StatusOr<std::unique_ptr<rpc::Server>> impostor =
        rpc::monitor::StartGrpcServer(side.link, "127.0.0.1:0", node_b);
    ASSERT_TRUE(impostor.ok()) << impostor.status();
    Received r;
    absl::StatusOr<std::unique_ptr<MonitorClient>> c = rpc::monitor::ConnectGrpc(
        (*impostor)->address(), {.vm = "v1"}, r.Callbacks(), absl::Seconds(10), node_a);
    ASSERT_FALSE(c.ok()) << "a node's certificate passed for v1's monitor";
    EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
    EXPECT_NE(c.status().message().find("spiffe://prod/node/b"), std::string::npos) << c.status();
    (*impostor)->Shutdown(absl::Seconds(2));
  }
  // The live agent kept its session: it answers, and the monitor's upscale request reaches it.
  EXPECT_TRUE((*a)->connected());
  EXPECT_TRUE((*a)->HealthCheck(absl::Seconds(5)).ok());
  side.SampleAt(900 * kMiB);
  std::optional<api::v1::UpscaleRequest> up = live.FirstUpscale();
  ASSERT_TRUE(up.has_value()) << "the upscale request did not reach the live agent";
  EXPECT_EQ(up->usage_bytes(), 900 * kMiB);

  // Another node's agent (where the VM migrated to) authenticates: it takes over.
  Received next;
  absl::StatusOr<std::unique_ptr<MonitorClient>> b =
      rpc::monitor::ConnectGrpc(address, {.vm = "v1"}, next.Callbacks(), absl::Seconds(10), node_b);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(live.Closed().has_value());
  EXPECT_TRUE((*b)->HealthCheck(absl::Seconds(5)).ok());

  side.link.Disconnect();
  (*server)->Shutdown(absl::Seconds(2));
}

// The in-process connector has no certificates: a link that requires one refuses it the same way.
TEST(MonitorLinkTls, InProcessIsRefusedWhenAnIdentityIsRequired) {
  Side side(FixtureProc(), {.require_agent_identity = true});
  ASSERT_TRUE(side.monitor.Start(1024 * kMiB).ok());
  rpc::monitor::InProcessConnector connector(side.link);
  Received r;
  absl::StatusOr<std::unique_ptr<MonitorClient>> c =
      connector.Connect("v1", {}, r.Callbacks(), absl::Seconds(1));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
  EXPECT_FALSE(side.link.connected());
}

// The monitor bound to its VM's agent by the agent token: on both transports, only an agent that
// sends the token is admitted; one without it or with another is refused (PERMISSION_DENIED,
// saying which) and the live agent keeps its session; a second agent with the token (the
// migration target's) takes over.
TEST(MonitorLinkToken, OnlyTheTokenHolderIsAdmittedAndTheLiveOneStays) {
  const std::string token = "0123456789abcdef0123456789abcdef";
  Side over_grpc(FixtureProc(), {.metrics_interval = absl::Hours(1), .agent_token = token});
  Side in_process(FixtureProc(), {.metrics_interval = absl::Hours(1), .agent_token = token});
  for (Side* s : {&over_grpc, &in_process}) ASSERT_TRUE(s->monitor.Start(1024 * kMiB).ok());
  absl::StatusOr<std::unique_ptr<rpc::Server>> server =
      rpc::monitor::StartGrpcServer(over_grpc.link, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  rpc::monitor::InProcessConnector connector(in_process.link);
  struct Transport {
    const char* name;
    Side& side;
    std::function<absl::StatusOr<std::unique_ptr<MonitorClient>>(const std::string& token,
                                                                 Received& r)>
        connect;
  };
  std::vector<Transport> transports = {
      {"gRPC", over_grpc,
       [&](const std::string& t, Received& r) {
         return rpc::monitor::ConnectGrpc(address, {.token = t}, r.Callbacks(), absl::Seconds(10));
       }},
      {"in process", in_process,
       [&](const std::string& t, Received& r) {
         return connector.Connect(address, {.token = t}, r.Callbacks(), absl::Seconds(10));
       }},
  };
  for (Transport& t : transports) {
    SCOPED_TRACE(t.name);
    Received live;
    absl::StatusOr<std::unique_ptr<MonitorClient>> agent = t.connect(token, live);
    ASSERT_TRUE(agent.ok()) << agent.status();
    ASSERT_TRUE(live.FirstMetrics().has_value());

    std::string wrong = token;
    wrong.back() = 'x';
    const std::vector<std::pair<std::string, std::string>> refused = {
        {"", "sent no agent token"},
        {wrong, "sent a wrong agent token"},
        {token.substr(1), "sent a wrong agent token"},
    };
    for (const auto& [sent, why] : refused) {
      Received r;
      absl::StatusOr<std::unique_ptr<MonitorClient>> c = t.connect(sent, r);
      ASSERT_FALSE(c.ok()) << "token \"" << sent << "\" was admitted";
      EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied) << c.status();
      EXPECT_NE(c.status().message().find(why), std::string::npos) << c.status();
      EXPECT_EQ(c.status().message().find(token), std::string::npos)
          << "the error shows the token: " << c.status();
    }
    // Not displaced: the live agent still answers, and the monitor's requests reach it.
    EXPECT_TRUE((*agent)->connected());
    EXPECT_TRUE((*agent)->HealthCheck(absl::Seconds(5)).ok());
    t.side.SampleAt(900 * kMiB);
    std::optional<api::v1::UpscaleRequest> up = live.FirstUpscale();
    ASSERT_TRUE(up.has_value()) << "the upscale request did not reach the live agent";

    // The token holder after a migration (or a restart) takes over.
    Received next;
    absl::StatusOr<std::unique_ptr<MonitorClient>> successor = t.connect(token, next);
    ASSERT_TRUE(successor.ok()) << successor.status();
    EXPECT_TRUE(live.Closed().has_value());
    EXPECT_TRUE((*successor)->HealthCheck(absl::Seconds(5)).ok());
    t.side.link.Disconnect();
    ASSERT_TRUE(next.Closed().has_value());
  }
  (*server)->Shutdown(absl::Seconds(2));
}

}  // namespace
}  // namespace autoscale::monitor
