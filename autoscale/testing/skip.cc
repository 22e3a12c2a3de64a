#include "autoscale/testing/skip.h"

#include <stdio.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace autoscale::testing {

std::string QemuMissing() {
  FILE* p = popen("qemu-system-x86_64 --version 2>/dev/null", "r");
  char line[256] = {0};
  if (p != nullptr) {
    if (fgets(line, sizeof(line), p) == nullptr) line[0] = '\0';
    pclose(p);
  }
  // "QEMU emulator version 10.0.2 (Debian ...)"
  constexpr char kPrefix[] = "QEMU emulator version ";
  std::string text = line;
  int major = 0;
  if (!absl::StartsWith(text, kPrefix) ||
      !absl::SimpleAtoi(text.substr(sizeof(kPrefix) - 1, text.find('.') - sizeof(kPrefix) + 1),
                        &major)) {
    return "qemu-system-x86_64 is not installed (scripts/setup installs QEMU 10)";
  }
  if (major < 10) {
    return absl::StrCat("qemu-system-x86_64 is version ", major,
                        "; these tests need QEMU 10 (scripts/setup installs it from backports)");
  }
  return "";
}

std::string RootMissing() {
  if (geteuid() == 0) return "";
  return absl::StrCat("needs root (running as uid ", geteuid(), ")");
}

}  // namespace autoscale::testing
