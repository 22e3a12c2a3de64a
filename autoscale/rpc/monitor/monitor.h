// The agent<->monitor protocol (autoscale/api/monitor.proto) in its own terms: one stream per VM,
// which the agent opens to the VM's monitor. Two sides:
//
// The agent's: MonitorClient, one session with a monitor: calls that wait for their reply
// (matched by id), and Callbacks for what the monitor sends on its own (metrics, upscale
// requests, the end of the stream). ConnectGrpc (grpc_client.h) opens one over gRPC;
// InProcessConnector (in_process.h) to a MonitorService in this process.
//
//   MonitorClient::Callbacks callbacks{
//       .on_metrics = [&](const api::v1::Metrics& m) { ... },
//       .on_upscale_request = [&](const api::v1::UpscaleRequest& r) { ... },
//       .on_closed = [&](const absl::Status& why) { ... },
//   };
//   ASSIGN_OR_RETURN(auto client, ConnectGrpc("127.0.0.1:10301", {.vm = "vm1", .token = token},
//                                             callbacks, absl::Seconds(4), security));
//   ASSIGN_OR_RETURN(api::v1::DownscaleResult r, client->RequestDownscale(target,
//   absl::Seconds(5)));
//
// The monitor's: MonitorService, what a monitor implements (monitor::AgentLink). The transport
// (StartGrpcServer in grpc_server.h, or the in-process connector) negotiates the version,
// numbers the messages, answers health checks and turns errors into the protocol's Error; it
// asks Admit whether the agent that connected may, calls Connect when it may, hands the returned
// AgentSession the agent's requests, and gives the service an AgentStream for what the monitor
// sends on its own.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/monitor.pb.h"

namespace autoscale::rpc::monitor {

// How an agent and the monitor it reached know each other (issue 14): the agent checks the
// monitor's identity, and proves its own with the VM's agent token (agent_token.h).
struct AgentBinding {
  // The VM the monitor runs in: over TLS, the monitor's certificate must name
  // spiffe://<trust-domain>/vm/<vm>, in the trust domain of the agent's own certificate, or the
  // connection fails (PERMISSION_DENIED) before the token is sent. Empty: not checked.
  std::string vm{};
  // The VM's agent token, sent in the Hello. Empty: none (a monitor that has one refuses it).
  std::string token{};
};

class MonitorClient {
 public:
  // Callbacks run on the client's own thread; they must not call back into the client's
  // blocking calls.
  struct Callbacks {
    std::function<void(const api::v1::Metrics&)> on_metrics;
    std::function<void(const api::v1::UpscaleRequest&)> on_upscale_request;
    // The stream ended (the monitor went away, replaced us, or the client was destroyed).
    std::function<void(const absl::Status&)> on_closed;
  };

  virtual ~MonitorClient() = default;

  // Asks whether the VM may shrink to `target`. An error (timeout, closed stream, the monitor's
  // Error) means the request failed; a result with ok=false is a denial.
  virtual absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(
      const api::v1::Resources& target, absl::Duration timeout) = 0;
  // Tells the monitor the VM now has `granted`; OK once it confirmed.
  virtual absl::Status NotifyUpscale(const api::v1::Resources& granted, absl::Duration timeout) = 0;
  virtual absl::Status HealthCheck(absl::Duration timeout) = 0;
  // False once the stream ended.
  virtual bool connected() const = 0;
};

// The agent of one session, as the monitor reaches it on its own initiative. Thread-safe.
// Sending returns false once the session ended.
class AgentStream {
 public:
  virtual ~AgentStream() = default;
  virtual bool SendMetrics(const api::v1::Metrics& metrics) = 0;
  virtual bool SendUpscaleRequest(const api::v1::UpscaleRequest& request) = 0;
  // Ends the session: the agent sees its stream close (another agent took its place, say).
  virtual void Close() = 0;
};

// The monitor's end of one agent's session: answers the agent's requests, one at a time. The
// transport destroys it when the session ends, after its last call, and sends nothing on the
// session's AgentStream after that.
class AgentSession {
 public:
  virtual ~AgentSession() = default;
  // INVALID_ARGUMENT: the request is malformed (the agent gets an INVALID_MESSAGE error); any
  // other error: the monitor could not answer (INTERNAL).
  virtual absl::StatusOr<api::v1::DownscaleResult> RequestDownscale(
      const api::v1::DownscaleRequest& request) = 0;
  virtual absl::Status NotifyUpscale(const api::v1::UpscaleNotification& notification) = 0;
};

class MonitorService {
 public:
  virtual ~MonitorService() = default;
  // Whether the agent that just said hello may have a session: `identity` is the first URI SAN
  // of its certificate ("" on a plaintext link), `token` the agent token of its Hello ("" for
  // none). An error (PERMISSION_DENIED naming it) refuses it before Connect: the agent gets the
  // error, and a live session is not disturbed.
  virtual absl::Status Admit(const std::string& identity, const std::string& token) {
    (void)identity;
    (void)token;
    return absl::OkStatus();
  }
  // An agent connected (`peer` names it in logs); `agent` reaches it while the session lasts.
  // Never null.
  virtual std::unique_ptr<AgentSession> Connect(std::shared_ptr<AgentStream> agent,
                                                const std::string& peer) = 0;
};

}  // namespace autoscale::rpc::monitor
