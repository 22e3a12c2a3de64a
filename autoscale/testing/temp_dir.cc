#include "autoscale/testing/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace autoscale::testing {

TempDir::TempDir(std::string_view prefix) {
  std::string path =
      absl::StrCat("/tmp/", absl::string_view(prefix.data(), prefix.size()), "-XXXXXX");
  if (mkdtemp(path.data()) == nullptr) {
    std::fprintf(stderr, "TempDir: mkdtemp %s: %s\n", path.c_str(), std::strerror(errno));
    std::abort();
  }
  path_ = std::move(path);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace autoscale::testing
