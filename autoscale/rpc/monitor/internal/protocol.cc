#include "autoscale/rpc/monitor/internal/protocol.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace autoscale::rpc::monitor::internal {
namespace {

constexpr api::v1::ProtocolVersion kVersion = api::v1::PROTOCOL_VERSION_1;

absl::string_view View(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The reply's Error as a status, or OK.
absl::Status ErrorOf(const api::v1::MonitorMessage& reply, std::string_view who) {
  if (!reply.has_error()) return absl::OkStatus();
  const std::string message = absl::StrCat(View(who), ": ", reply.error().message());
  if (reply.error().kind() == api::v1::Error::INVALID_MESSAGE) {
    return absl::InvalidArgumentError(message);
  }
  if (reply.error().kind() == api::v1::Error::PERMISSION_DENIED) {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

absl::Status Unexpected(std::string_view who, const char* request) {
  return absl::InternalError(absl::StrCat(View(who), ": unexpected reply to ", request));
}

}  // namespace

api::v1::AgentMessage Hello(const std::string& token) {
  api::v1::AgentMessage m;
  m.mutable_hello()->set_min_version(kVersion);
  m.mutable_hello()->set_max_version(kVersion);
  m.mutable_hello()->set_agent_token(token);
  return m;
}

absl::Status CheckHello(const api::v1::AgentMessage& first) {
  if (!first.has_hello()) {
    return absl::FailedPreconditionError("expected a Hello as the first message");
  }
  if (first.hello().min_version() > kVersion || first.hello().max_version() < kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("no common protocol version: agent speaks ", first.hello().min_version(), "..",
                     first.hello().max_version(), ", monitor speaks ", kVersion));
  }
  return absl::OkStatus();
}

api::v1::MonitorMessage HelloReply(uint64_t id) {
  api::v1::MonitorMessage m;
  m.set_id(id);
  m.mutable_hello_reply()->set_version(kVersion);
  return m;
}

api::v1::MonitorMessage ErrorReply(uint64_t id, api::v1::Error::Kind kind,
                                   const std::string& message) {
  api::v1::MonitorMessage m;
  m.set_id(id);
  m.mutable_error()->set_kind(kind);
  m.mutable_error()->set_message(message);
  return m;
}

api::v1::MonitorMessage ErrorReply(uint64_t id, const absl::Status& error) {
  return ErrorReply(id,
                    error.code() == absl::StatusCode::kInvalidArgument
                        ? api::v1::Error::INVALID_MESSAGE
                        : api::v1::Error::INTERNAL,
                    std::string(error.message()));
}

api::v1::MonitorMessage NotARequest(const api::v1::AgentMessage& message) {
  if (message.has_hello()) {
    return ErrorReply(message.id(), api::v1::Error::INVALID_MESSAGE, "Hello sent twice");
  }
  return ErrorReply(message.id(), api::v1::Error::INVALID_MESSAGE,
                    "message without a kind (newer agent?)");
}

api::v1::AgentMessage DownscaleRequest(const api::v1::Resources& target) {
  api::v1::AgentMessage m;
  *m.mutable_downscale_request()->mutable_target() = target;
  return m;
}

api::v1::AgentMessage UpscaleNotification(const api::v1::Resources& granted) {
  api::v1::AgentMessage m;
  *m.mutable_upscale_notification()->mutable_granted() = granted;
  return m;
}

api::v1::AgentMessage HealthCheck() {
  api::v1::AgentMessage m;
  m.mutable_health_check();
  return m;
}

absl::Status HelloAnswer(const api::v1::MonitorMessage& reply, std::string_view who) {
  if (absl::Status e = ErrorOf(reply, who); !e.ok()) return e;
  if (!reply.has_hello_reply()) {
    return absl::FailedPreconditionError(absl::StrCat(View(who), ": unexpected answer to Hello"));
  }
  return absl::OkStatus();
}

absl::StatusOr<api::v1::DownscaleResult> DownscaleResult(const api::v1::MonitorMessage& reply,
                                                         std::string_view who) {
  if (absl::Status e = ErrorOf(reply, who); !e.ok()) return e;
  if (!reply.has_downscale_result()) return Unexpected(who, "DownscaleRequest");
  return reply.downscale_result();
}

absl::Status UpscaleConfirmation(const api::v1::MonitorMessage& reply, std::string_view who) {
  if (absl::Status e = ErrorOf(reply, who); !e.ok()) return e;
  if (!reply.has_upscale_confirmation()) return Unexpected(who, "UpscaleNotification");
  return absl::OkStatus();
}

absl::Status HealthCheckReply(const api::v1::MonitorMessage& reply, std::string_view who) {
  if (absl::Status e = ErrorOf(reply, who); !e.ok()) return e;
  if (!reply.has_health_check()) return Unexpected(who, "HealthCheck");
  return absl::OkStatus();
}

}  // namespace autoscale::rpc::monitor::internal
