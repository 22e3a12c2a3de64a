// Small files in a directory another user may control (a VM's runtime directory once QEMU dropped
// root): written only as new files and read only from regular files of the right owner, never
// through a link planted there, never blocked on a FIFO.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace autoscale {

// Creates `path` with `contents` and `mode`; the file must not exist yet, and a link at `path` is
// not followed (both are errors).
absl::Status WriteNewFile(const std::string& path, std::string_view contents, int mode);

// The contents of `path`, which must be a regular file owned by this process's user (or by root,
// if `root_may_own`), read without following a link and without blocking on a FIFO; at most
// `max_bytes + 1` bytes are read, so a caller can tell a file that is too large. Errors name the
// file: NOT_FOUND when it does not exist, PERMISSION_DENIED when it is not such a file.
absl::StatusOr<std::string> ReadOwnedFile(const std::string& path, size_t max_bytes,
                                          bool root_may_own);

}  // namespace autoscale
