// What both transports of the monitor protocol share, so that the gRPC one and the in-process
// one check and answer alike: the handshake, the server's answer to one agent message, and the
// client's reading of a reply.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autoscale/api/monitor.pb.h"

namespace autoscale::rpc::monitor::internal {

// The agent's first message: a Hello whose version range includes ours.
api::AgentMessage Hello();
// Why `first` does not open a session (the message goes back in an Error): not a Hello, or no
// common version.
absl::Status CheckHello(const api::AgentMessage& first);
api::MonitorMessage HelloReply(uint64_t id);

api::MonitorMessage ErrorReply(uint64_t id, api::Error::Kind kind, const std::string& message);

// The Error for a failed answer: INVALID_MESSAGE for INVALID_ARGUMENT, INTERNAL otherwise.
api::MonitorMessage ErrorReply(uint64_t id, const absl::Status& error);
// The reply to a message that is not a request a session answers (a second Hello, no kind).
api::MonitorMessage NotARequest(const api::AgentMessage& message);

// The reply to one of the agent's requests (with its id): `session`'s answer (an AgentSession,
// monitor.h), the transport's own (health checks), or an Error.
template <typename Session>
api::MonitorMessage Answer(Session& session, const api::AgentMessage& request) {
  api::MonitorMessage reply;
  reply.set_id(request.id());
  switch (request.kind_case()) {
    case api::AgentMessage::kHealthCheck:
      reply.mutable_health_check();
      return reply;
    case api::AgentMessage::kDownscaleRequest: {
      absl::StatusOr<api::DownscaleResult> result =
          session.RequestDownscale(request.downscale_request());
      if (!result.ok()) return ErrorReply(request.id(), result.status());
      *reply.mutable_downscale_result() = *std::move(result);
      return reply;
    }
    case api::AgentMessage::kUpscaleNotification: {
      absl::Status s = session.NotifyUpscale(request.upscale_notification());
      if (!s.ok()) return ErrorReply(request.id(), s);
      reply.mutable_upscale_confirmation();
      return reply;
    }
    default:
      return NotARequest(request);
  }
}

// The agent's requests.
api::AgentMessage DownscaleRequest(const api::Resources& target);
api::AgentMessage UpscaleNotification(const api::Resources& granted);
api::AgentMessage HealthCheck();

// What a reply means to the agent's call: the monitor's Error becomes INVALID_ARGUMENT
// (INVALID_MESSAGE) or INTERNAL, and a reply of another kind is INTERNAL. `who` ("monitor at
// 127.0.0.1:10301") starts every message.
absl::Status HelloAnswer(const api::MonitorMessage& reply, std::string_view who);
absl::StatusOr<api::DownscaleResult> DownscaleResult(const api::MonitorMessage& reply,
                                                     std::string_view who);
absl::Status UpscaleConfirmation(const api::MonitorMessage& reply, std::string_view who);
absl::Status HealthCheckReply(const api::MonitorMessage& reply, std::string_view who);

}  // namespace autoscale::rpc::monitor::internal
