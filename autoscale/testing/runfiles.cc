#include "autoscale/testing/runfiles.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace autoscale::testing {

std::string Runfile(std::string_view path) {
  std::string root;
  if (const char* d = std::getenv("TEST_SRCDIR")) {
    root = d;
  } else if (const char* r = std::getenv("RUNFILES_DIR")) {
    root = r;
  } else {
    root = std::filesystem::read_symlink("/proc/self/exe").string() + ".runfiles";
  }
  const char* ws = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(root, "/", ws ? ws : "autoscale", "/",
                      absl::string_view(path.data(), path.size()));
}

}  // namespace autoscale::testing
