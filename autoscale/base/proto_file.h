// Reading protobuf messages (configuration, test inputs) from JSON or text-format files, with
// errors that name the file, the position or the field, and what is wrong:
//
//   api::v1::ScalingConfig config;
//   absl::Status s = ReadProtoFile("/etc/autoscale/agent.json", config);
//   // s: INVALID_ARGUMENT "/etc/autoscale/agent.json: field scaling.loadAverageFractionTarget:
//   //    invalid value "x" for type TYPE_DOUBLE"
//
// JSON uses the proto3 JSON mapping (lowerCamelCase names; proto names are accepted too).
// Unknown fields are errors in both formats, so a typo never silently falls back to a default.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace autoscale {

// Parses JSON `text` into `msg` (cleared first). `source` names the text's origin in errors.
absl::Status ParseJsonProto(std::string_view text, google::protobuf::Message& msg,
                            std::string_view source);

// Parses protobuf text format into `msg` (cleared first).
absl::Status ParseTextProto(std::string_view text, google::protobuf::Message& msg,
                            std::string_view source);

// Reads `path` into `msg`: `.json` as JSON; `.textproto`, `.txtpb`, `.pbtxt` or `.textpb` as
// text format. Any other extension is an error.
absl::Status ReadProtoFile(const std::string& path, google::protobuf::Message& msg);

// Reads a whole file. The error names the file and the reason (errno text).
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The proto3 JSON form of `msg` on one line (lowerCamelCase names).
std::string ToJson(const google::protobuf::Message& msg);

}  // namespace autoscale
