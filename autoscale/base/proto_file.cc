#include "autoscale/base/proto_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"

namespace autoscale {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

// 1-based line and column of byte `offset` in `text`.
std::pair<int, int> LineColumn(std::string_view text, size_t offset) {
  int line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

// Rewrites a protobuf field path such as "bounds.min_cu" or "lfc_working_set_pages[3]" to the
// JSON names the user wrote ("bounds.minCu", "lfcWorkingSetPages[3]").
std::string JsonFieldPath(const Descriptor* type, absl::string_view path) {
  std::vector<std::string> out;
  for (absl::string_view segment : absl::StrSplit(path, '.')) {
    size_t bracket = segment.find('[');
    absl::string_view name = segment.substr(0, bracket);
    absl::string_view index = bracket == absl::string_view::npos ? "" : segment.substr(bracket);
    const FieldDescriptor* field =
        type == nullptr ? nullptr : type->FindFieldByName(std::string(name));
    if (field == nullptr) {
      out.push_back(std::string(segment));
      type = nullptr;
      continue;
    }
    out.push_back(absl::StrCat(field->json_name(), index));
    type = field->message_type();
  }
  return absl::StrJoin(out, ".");
}

// protobuf reports "(path): what" or "(path) name: Cannot find field."; make both read
// "field <json path>: what".
std::string DescribeJsonError(const Descriptor* type, absl::string_view msg) {
  if (!absl::StartsWith(msg, "(")) return std::string(msg);
  size_t close = msg.find(')');
  if (close == absl::string_view::npos) return std::string(msg);
  absl::string_view path = msg.substr(1, close - 1);
  absl::string_view rest = msg.substr(close + 1);
  if (absl::ConsumeSuffix(&rest, ": Cannot find field.")) {
    absl::ConsumePrefix(&rest, " ");
    std::string full = path.empty() ? std::string(rest) : absl::StrCat(path, ".", rest);
    return absl::StrCat("field ", JsonFieldPath(type, full), ": unknown field (no such field in ",
                        type->full_name(), ")");
  }
  absl::ConsumePrefix(&rest, ":");
  absl::ConsumePrefix(&rest, " ");
  if (path.empty()) return std::string(rest);
  return absl::StrCat("field ", JsonFieldPath(type, path), ": ", rest);
}

class TextErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  void AddWarning(int, int, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

absl::Status ParseJsonProto(std::string_view text, google::protobuf::Message& msg,
                            std::string_view source) {
  msg.Clear();
  // Syntax first, with RapidJSON, for a precise line and column.
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError()) {
    auto [line, column] = LineColumn(text, doc.GetErrorOffset());
    return absl::InvalidArgumentError(
        absl::StrCat(AbslView(source), ":", line, ":", column,
                     ": JSON syntax error: ", rapidjson::GetParseError_En(doc.GetParseError())));
  }
  if (!doc.IsObject()) {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(source), ": expected a JSON object for ", msg.GetDescriptor()->full_name()));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), &msg, options);
  if (!status.ok()) {
    msg.Clear();
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(source), ": ",
        DescribeJsonError(
            msg.GetDescriptor(),
            AbslView(std::string_view(status.message().data(), status.message().size())))));
  }
  return absl::OkStatus();
}

absl::Status ParseTextProto(std::string_view text, google::protobuf::Message& msg,
                            std::string_view source) {
  msg.Clear();
  TextErrorCollector errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &msg)) {
    msg.Clear();
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(source), ":",
        errors.first().empty() ? std::string(" text format parse error") : errors.first()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  return content.str();
}

absl::Status ReadProtoFile(const std::string& path, google::protobuf::Message& msg) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  if (absl::EndsWith(path, ".json")) return ParseJsonProto(*text, msg, path);
  for (const char* ext : {".textproto", ".txtpb", ".pbtxt", ".textpb"}) {
    if (absl::EndsWith(path, ext)) return ParseTextProto(*text, msg, path);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": unknown file type (want .json, .textproto, .txtpb, .pbtxt or .textpb)"));
}

std::string ToJson(const google::protobuf::Message& msg) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  auto status = google::protobuf::util::MessageToJsonString(msg, &out, options);
  // Only an Any of an unknown type can fail to print; none of our messages holds one.
  CHECK(status.ok()) << "printing " << msg.GetDescriptor()->full_name() << " as JSON: " << status;
  return out;
}

}  // namespace autoscale
