#include "monitor/cgroup/layout.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::monitor::cgroup {
namespace {

absl::string_view View(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

const char* VersionName(Version v) {
  switch (v) {
    case Version::kV1:
      return "v1";
    case Version::kV2:
      return "v2";
    case Version::kNone:
      break;
  }
  return "none";
}

Version Layout::memory_version() const {
  if (!v1_memory.empty()) return Version::kV1;
  if (!v2.empty() && v2_has_memory) return Version::kV2;
  return Version::kNone;
}

std::string Layout::Describe() const {
  if (!v1_memory.empty() && !v2.empty()) return "hybrid";
  if (!v1_memory.empty()) return "v1";
  if (!v2.empty()) return "v2";
  return "none";
}

absl::StatusOr<Layout> DetectLayout(const std::string& mountinfo) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(mountinfo));
  Layout layout;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ++line_no;
    // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> <src>
    // <super>"
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    size_t dash = 0;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (fields.size() < 5 || dash + 1 >= fields.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(mountinfo, ":", line_no, ": malformed mountinfo line: ", line));
    }
    absl::string_view mount_point = fields[4];
    absl::string_view fstype = dash + 1 < fields.size() ? fields[dash + 1] : "";
    absl::string_view super_options = dash + 3 < fields.size() ? fields[dash + 3] : "";
    if (fstype == "cgroup2") {
      layout.v2 = std::string(mount_point);
    } else if (fstype == "cgroup") {
      for (absl::string_view opt : absl::StrSplit(super_options, ',')) {
        if (opt == "memory") layout.v1_memory = std::string(mount_point);
      }
    }
  }
  if (!layout.v2.empty()) {
    auto controllers = ReadFile(layout.v2 + "/cgroup.controllers");
    if (controllers.ok()) {
      for (absl::string_view c : absl::StrSplit(*controllers, absl::ByAnyChar(" \n"))) {
        if (c == "memory") layout.v2_has_memory = true;
      }
    }
  }
  return layout;
}

absl::StatusOr<std::string> OwnCgroup(std::string_view controller, const std::string& proc_cgroup) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(proc_cgroup));
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // "<id>:<controllers>:<path>"; v2 is "0::<path>".
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(proc_cgroup, ": malformed line: ", line));
    }
    bool match = controller.empty() ? parts[1].empty() : false;
    for (absl::string_view c : absl::StrSplit(parts[1], ',')) {
      if (!controller.empty() && c == View(controller)) match = true;
    }
    if (match) return std::string(parts[2]);
  }
  return absl::NotFoundError(
      absl::StrCat(proc_cgroup, ": no cgroup for controller '",
                   controller.empty() ? std::string("(v2)") : std::string(controller), "'"));
}

absl::StatusOr<MemoryStat> ParseMemoryStat(std::string_view text, std::string_view source) {
  // Anon: v2 "anon" or v1 "rss" are counted when pages are mapped, but leave out shared memory
  // (shmem: Postgres's shared_buffers, /dev/shm), which is no more reclaimable than anon without
  // swap; it is added from "shmem". active_anon + inactive_anon (what the reference reads)
  // include shmem, but count pages on the LRU lists, which the kernel fills in per-CPU batches,
  // so they lag behind a burst of allocation (by up to ~15 huge pages): they are used only when
  // a kernel has no shmem key. v1 also has hierarchical totals (total_*); prefer them.
  enum {
    kAnon,
    kRss,
    kCache,
    kFile,
    kActiveAnon,
    kInactiveAnon,
    kActiveFile,
    kInactiveFile,
    kShmem,
    kN
  };
  const char* keys[kN] = {"anon",          "rss",         "cache",         "file", "active_anon",
                          "inactive_anon", "active_file", "inactive_file", "shmem"};
  int64_t v[2][kN];  // [plain/total][key]; -1: absent
  for (auto& row : v) std::fill(std::begin(row), std::end(row), -1);
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(View(text), '\n', absl::SkipEmpty())) {
    ++line_no;
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
    int total = absl::ConsumePrefix(&kv.first, "total_") ? 1 : 0;
    for (int k = 0; k < kN; ++k) {
      if (kv.first != keys[k]) continue;
      int64_t n;
      if (!absl::SimpleAtoi(kv.second, &n) || n < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            View(source), ":", line_no, ": bad value for ", keys[k], ": '", kv.second, "'"));
      }
      v[total][k] = n;
    }
  }
  // The same row (totals, else plain) for every key, so that shmem is not added to another
  // level's anon.
  int t = v[1][kAnon] >= 0 || v[1][kRss] >= 0 || v[1][kActiveAnon] >= 0 ? 1 : 0;
  const int64_t* r = v[t];
  MemoryStat s;
  const int64_t mapped_anon = r[kAnon] >= 0 ? r[kAnon] : r[kRss];
  const int64_t lru_anon =
      r[kActiveAnon] >= 0 && r[kInactiveAnon] >= 0 ? r[kActiveAnon] + r[kInactiveAnon] : -1;
  if (mapped_anon >= 0 && r[kShmem] >= 0) {
    s.anon_bytes = mapped_anon + r[kShmem];
  } else if (lru_anon >= 0) {
    s.anon_bytes = lru_anon;
  } else if (mapped_anon >= 0) {
    s.anon_bytes = mapped_anon;  // a kernel without shmem accounting: nothing better
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(View(source), ": no anon, rss or active_anon/inactive_anon in memory.stat"));
  }
  // Page cache that can be dropped: v2 "file" and v1 "cache" include shmem, which cannot.
  const int64_t cache = r[kFile] >= 0 ? r[kFile] : r[kCache];
  int64_t file = cache >= 0 ? cache - std::max<int64_t>(0, r[kShmem]) : 0;
  if (cache < 0 && r[kActiveFile] >= 0 && r[kInactiveFile] >= 0) {
    file = r[kActiveFile] + r[kInactiveFile];
  }
  s.file_bytes = std::max<int64_t>(0, file);
  return s;
}

absl::StatusOr<int64_t> ReadInt64File(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t == "max") return std::numeric_limits<int64_t>::max();
  int64_t v;
  if (!absl::SimpleAtoi(t, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected an integer, got '", absl::CEscape(t.substr(0, 64)), "'"));
  }
  return v;
}

absl::Status WriteFile(const std::string& path, std::string_view value) {
  // O_TRUNC as a shell's `>` (cgroupfs ignores it): a test's regular-file fixture is replaced,
  // not overwritten in part.
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("open ", path, " for writing"));
  }
  ssize_t n = write(fd, value.data(), value.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return absl::ErrnoToStatus(n < 0 ? err : EIO,
                               absl::StrCat("write '", View(value), "' to ", path));
  }
  return absl::OkStatus();
}

bool HasCapSysResource() {
  auto status = ReadFile("/proc/self/status");
  if (!status.ok()) return false;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "CapEff:")) continue;
    uint64_t caps;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line), &caps)) return false;
    return (caps >> 24) & 1;  // CAP_SYS_RESOURCE
  }
  return false;
}

}  // namespace autoscale::monitor::cgroup
