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

// The agent's first message: a Hello whose version range includes ours, with the agent token.
api::v1::AgentMessage Hello(const std::string& token);
// Why `first` does not open a session (the message goes back in an Error): not a Hello, or no
// common version.
absl::Status CheckHello(const api::v1::AgentMessage& first);
api::v1::MonitorMessage HelloReply(uint64_t id);

api::v1::MonitorMessage ErrorReply(uint64_t id, api::v1::Error::Kind kind,
                                   const std::string& message);

// The Error for a failed answer: INVALID_MESSAGE for INVALID_ARGUMENT, INTERNAL otherwise.
api::v1::MonitorMessage ErrorReply(uint64_t id, const absl::Status& error);
// The reply to a message that is not a request a session answers (a second Hello, no kind).
api::v1::MonitorMessage NotARequest(const api::v1::AgentMessage& message);

// The reply to one of the agent's requests (with its id): `session`'s answer (an AgentSession,
// monitor.h), the transport's own (health checks), or an Error.
template <typename Session>
api::v1::MonitorMessage Answer(Session& session, const api::v1::AgentMessage& request) {
  api::v1::MonitorMessage reply;
  reply.set_id(request.id());
  switch (request.kind_case()) {
    case api::v1::AgentMessage::kHealthCheck:
      reply.mutable_health_check();
      return reply;
    case api::v1::AgentMessage::kDownscaleRequest: {
      absl::StatusOr<api::v1::DownscaleResult> result =
          session.RequestDownscale(request.downscale_request());
      if (!result.ok()) return ErrorReply(request.id(), result.status());
      *reply.mutable_downscale_result() = *std::move(result);
      return reply;
    }
    case api::v1::AgentMessage::kUpscaleNotification: {
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
api::v1::AgentMessage DownscaleRequest(const api::v1::Resources& target);
api::v1::AgentMessage UpscaleNotification(const api::v1::Resources& granted);
api::v1::AgentMessage HealthCheck();

// What a reply means to the agent's call: the monitor's Error becomes INVALID_ARGUMENT
// (INVALID_MESSAGE) or INTERNAL, and a reply of another kind is INTERNAL. `who` ("monitor at
// 127.0.0.1:10301") starts every message.
absl::Status HelloAnswer(const api::v1::MonitorMessage& reply, std::string_view who);
absl::StatusOr<api::v1::DownscaleResult> DownscaleResult(const api::v1::MonitorMessage& reply,
                                                         std::string_view who);
absl::Status UpscaleConfirmation(const api::v1::MonitorMessage& reply, std::string_view who);
absl::Status HealthCheckReply(const api::v1::MonitorMessage& reply, std::string_view who);

}  // namespace autoscale::rpc::monitor::internal
