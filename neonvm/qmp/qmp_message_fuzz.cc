// Fuzz target for everything QEMU sends: the line framer (with a small bound, so oversized lines
// are exercised) and the message parser. Also checks that a parsed reply value survives a round
// trip through the parser, and that command arguments are accepted only as JSON objects.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "neonvm/qmp/internal/message.h"

namespace {

using autoscale::neonvm::qmp::internal::CompactArguments;
using autoscale::neonvm::qmp::internal::LineFramer;
using autoscale::neonvm::qmp::internal::ParseQmpMessage;
using autoscale::neonvm::qmp::internal::QmpMessage;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "qmp_message_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  // Feed in uneven chunks, as a socket would deliver them.
  LineFramer framer(4096);
  std::vector<std::string> lines;
  size_t chunk = 1 + (size % 7) * 13;
  for (size_t pos = 0; pos < input.size(); pos += chunk) {
    if (!framer.Feed(input.substr(pos, chunk), &lines).ok()) break;
  }
  for (const std::string& line : lines) {
    Check(line.size() <= 4096, "framer returned a line over its bound");
    auto m = ParseQmpMessage(line);
    if (!m.ok()) continue;
    if (m->kind == QmpMessage::Kind::kReturn || m->kind == QmpMessage::Kind::kEvent) {
      auto again = ParseQmpMessage("{\"return\":" + m->json + "}");
      Check(again.ok(), "a parsed value does not parse again");
      Check(again->json == m->json, "a parsed value changed in a round trip");
    }
  }

  // The whole input as command arguments: accepted only as an object, and then stable.
  auto args = CompactArguments(input);
  if (args.ok() && !args->empty()) {
    Check((*args)[0] == '{', "arguments accepted that are not an object");
    auto again = CompactArguments(*args);
    Check(again.ok() && *again == *args, "compacted arguments changed in a round trip");
  }
  return 0;
}
