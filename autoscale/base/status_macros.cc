#include "autoscale/base/status_macros.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace autoscale {

absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(absl::string_view(context.data(), context.size()),
                                                  ": ", status.message()));
}

absl::Status ErrnoStatus(int error_number, std::string_view what) {
  return absl::Status(
      absl::ErrnoToStatusCode(error_number),
      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", std::strerror(error_number)));
}

}  // namespace autoscale
