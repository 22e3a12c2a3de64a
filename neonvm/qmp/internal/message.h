// The QMP wire format, parsed: line framing with a length bound, and one parsed message per line
// (greeting, command reply or asynchronous event). Used by the client and by the fuzz target;
// other libraries use qmp_client.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "neonvm/qmp/qmp_client.h"

namespace autoscale::neonvm::qmp::internal {

// Deepest nesting of arrays and objects accepted in one message. QEMU's replies nest a few levels
// (query-qmp-schema is the deepest, at 6); the bound keeps recursion in the JSON library shallow.
inline constexpr int kMaxJsonDepth = 64;

// Splits a byte stream into '\n'-terminated lines, refusing a line longer than `max_line_bytes`
// (without its newline) as soon as that many bytes have arrived without a newline.
class LineFramer {
 public:
  explicit LineFramer(size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

  // Appends `bytes` and moves every completed line (without '\n', a trailing '\r' removed) to
  // `lines`. After an error the framer must not be used again.
  absl::Status Feed(std::string_view bytes, std::vector<std::string>* lines);

  // Bytes received after the last complete line.
  size_t partial_bytes() const { return partial_.size(); }

 private:
  size_t max_line_bytes_;
  std::string partial_;
};

struct QmpMessage {
  enum class Kind { kGreeting, kReturn, kError, kEvent };
  Kind kind = Kind::kReturn;

  // kGreeting.
  QmpVersion version;
  // kReturn and kError: the "id" member when it is a non-negative integer. QEMU echoes the id of
  // the command; a reply without one (QEMU could not parse a command) has none.
  std::optional<uint64_t> id;
  // kReturn: the "return" value; kEvent: the "data" member ("{}" when absent). Compact JSON text.
  std::string json;
  // kError.
  std::string error_class;
  std::string error_desc;
  // kEvent.
  std::string event;
  absl::Time timestamp = absl::UnixEpoch();
};

// Parses one line from QEMU. Anything that is not a single JSON object of one of the four shapes
// above (or is nested deeper than kMaxJsonDepth) is an InvalidArgument error saying why.
absl::StatusOr<QmpMessage> ParseQmpMessage(std::string_view line);

// Checks that `json` is empty or a single JSON object (the "arguments" of a command) and returns
// it in compact form ("" when empty).
absl::StatusOr<std::string> CompactArguments(std::string_view json);

}  // namespace autoscale::neonvm::qmp::internal
