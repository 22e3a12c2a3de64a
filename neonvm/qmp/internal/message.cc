#include "neonvm/qmp/internal/message.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace autoscale::neonvm::qmp::internal {
namespace {

using rapidjson::Value;

// The deepest nesting of `text`, stopping early once past kMaxJsonDepth. Brackets inside strings
// do not count.
int NestingDepth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > kMaxJsonDepth) break;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

// A short, printable excerpt of bad input for an error message.
std::string Excerpt(std::string_view text) {
  constexpr size_t kMax = 80;
  std::string out;
  for (char c : text.substr(0, kMax)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > kMax) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

absl::Status Malformed(std::string_view line, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "malformed QMP message (", absl::string_view(why.data(), why.size()), "): ", Excerpt(line)));
}

absl::StatusOr<rapidjson::Document> ParseObject(std::string_view text) {
  if (NestingDepth(text) > kMaxJsonDepth) {
    return Malformed(text, absl::StrCat("nested deeper than ", kMaxJsonDepth));
  }
  rapidjson::Document doc;
  // Iterative parsing: no recursion on the input's structure. Full precision: numbers survive a
  // round trip through Compact().
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseFullPrecisionFlag>(text.data(),
                                                                                 text.size());
  if (doc.HasParseError()) {
    return Malformed(text, absl::StrCat(rapidjson::GetParseError_En(doc.GetParseError()),
                                        " at offset ", doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) return Malformed(text, "not a JSON object");
  return doc;
}

std::string Compact(const Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

const Value* Member(const Value& object, const char* name) {
  auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

std::optional<uint64_t> Id(const Value& object) {
  const Value* id = Member(object, "id");
  if (id == nullptr || !id->IsUint64()) return std::nullopt;
  return id->GetUint64();
}

absl::StatusOr<QmpMessage> ParseGreeting(std::string_view line, const Value& qmp) {
  if (!qmp.IsObject()) return Malformed(line, "\"QMP\" is not an object");
  QmpMessage m;
  m.kind = QmpMessage::Kind::kGreeting;
  const Value* version = Member(qmp, "version");
  const Value* qemu =
      version != nullptr && version->IsObject() ? Member(*version, "qemu") : nullptr;
  if (qemu == nullptr || !qemu->IsObject()) return Malformed(line, "greeting without version");
  int* fields[] = {&m.version.major, &m.version.minor, &m.version.micro};
  const char* names[] = {"major", "minor", "micro"};
  for (int i = 0; i < 3; ++i) {
    const Value* v = Member(*qemu, names[i]);
    if (v == nullptr || !v->IsInt()) {
      return Malformed(line, absl::StrCat("greeting without version.qemu.", names[i]));
    }
    *fields[i] = v->GetInt();
  }
  if (const Value* package = Member(*version, "package");
      package != nullptr && package->IsString()) {
    m.version.package = std::string(package->GetString(), package->GetStringLength());
  }
  return m;
}

absl::StatusOr<QmpMessage> ParseEvent(std::string_view line, const Value& root, const Value& name) {
  if (!name.IsString()) return Malformed(line, "\"event\" is not a string");
  QmpMessage m;
  m.kind = QmpMessage::Kind::kEvent;
  m.event = std::string(name.GetString(), name.GetStringLength());
  const Value* data = Member(root, "data");
  m.json = data == nullptr ? "{}" : Compact(*data);
  const Value* ts = Member(root, "timestamp");
  if (ts != nullptr) {
    const Value* s = ts->IsObject() ? Member(*ts, "seconds") : nullptr;
    const Value* us = ts->IsObject() ? Member(*ts, "microseconds") : nullptr;
    if (s == nullptr || us == nullptr || !s->IsInt64() || !us->IsInt64()) {
      return Malformed(line, "bad event timestamp");
    }
    m.timestamp = absl::FromUnixSeconds(s->GetInt64()) + absl::Microseconds(us->GetInt64());
  }
  return m;
}

}  // namespace

absl::Status LineFramer::Feed(std::string_view bytes, std::vector<std::string>* lines) {
  while (!bytes.empty()) {
    size_t newline = bytes.find('\n');
    std::string_view chunk = bytes.substr(0, newline);
    if (partial_.size() + chunk.size() > max_line_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("QMP message longer than ", max_line_bytes_, " bytes"));
    }
    partial_.append(chunk.data(), chunk.size());
    if (newline == std::string_view::npos) break;
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    lines->push_back(std::move(partial_));
    partial_.clear();
    bytes.remove_prefix(newline + 1);
  }
  return absl::OkStatus();
}

absl::StatusOr<QmpMessage> ParseQmpMessage(std::string_view line) {
  absl::StatusOr<rapidjson::Document> parsed = ParseObject(line);
  if (!parsed.ok()) return parsed.status();
  const rapidjson::Document& doc = *parsed;

  if (const Value* qmp = Member(doc, "QMP")) return ParseGreeting(line, *qmp);
  if (const Value* name = Member(doc, "event")) return ParseEvent(line, doc, *name);
  if (const Value* ret = Member(doc, "return")) {
    QmpMessage m;
    m.kind = QmpMessage::Kind::kReturn;
    m.id = Id(doc);
    m.json = Compact(*ret);
    return m;
  }
  if (const Value* error = Member(doc, "error")) {
    const Value* cls = error->IsObject() ? Member(*error, "class") : nullptr;
    const Value* desc = error->IsObject() ? Member(*error, "desc") : nullptr;
    if (cls == nullptr || !cls->IsString() || desc == nullptr || !desc->IsString()) {
      return Malformed(line, "error without class and desc strings");
    }
    QmpMessage m;
    m.kind = QmpMessage::Kind::kError;
    m.id = Id(doc);
    m.error_class = std::string(cls->GetString(), cls->GetStringLength());
    m.error_desc = std::string(desc->GetString(), desc->GetStringLength());
    return m;
  }
  return Malformed(line, "neither greeting, reply nor event");
}

absl::StatusOr<std::string> CompactArguments(std::string_view json) {
  if (json.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::string();
  absl::StatusOr<rapidjson::Document> parsed = ParseObject(json);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("arguments are not a JSON object: ", parsed.status().message()));
  }
  return Compact(*parsed);
}

}  // namespace autoscale::neonvm::qmp::internal
