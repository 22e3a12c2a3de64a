// Where the cgroup hierarchies are, which version holds the memory controller, and how to read a
// memory cgroup's numbers. Works on cgroup v1, v2 and hybrid layouts, and on directory fixtures
// (a temporary directory with the same files) for tests.
//
//   ASSIGN_OR_RETURN(Layout layout, DetectLayout());
//   if (layout.memory_version() == Version::kV1) {
//     ASSIGN_OR_RETURN(std::string own, OwnCgroup("memory"));   // "/process_api/1234"
//     std::string dir = layout.v1_memory + own;                 // our own memory cgroup
//   }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace autoscale::monitor::cgroup {

enum class Version { kNone, kV1, kV2 };
const char* VersionName(Version v);

struct Layout {
  // Mount point of the v1 memory controller ("" if none).
  std::string v1_memory;
  // Mount point of the cgroup2 hierarchy ("" if none).
  std::string v2;
  // Whether cgroup2 offers the memory controller (its cgroup.controllers lists "memory").
  bool v2_has_memory = false;

  // v1 if a v1 memory controller is mounted, else v2 if cgroup2 has it, else none.
  Version memory_version() const;
  // "v1", "v2", "hybrid" (both hierarchies mounted) or "none".
  std::string Describe() const;
};

// Reads mount points from `mountinfo` (the format of /proc/self/mountinfo).
absl::StatusOr<Layout> DetectLayout(const std::string& mountinfo = "/proc/self/mountinfo");

// The path of this process's cgroup for `controller` ("memory"), or for the v2 hierarchy when
// `controller` is empty, from `proc_cgroup` (the format of /proc/self/cgroup).
absl::StatusOr<std::string> OwnCgroup(std::string_view controller,
                                      const std::string& proc_cgroup = "/proc/self/cgroup");

// What a memory cgroup holds, from memory.stat (v1: the hierarchical total_* keys; v2: the plain
// keys).
struct MemoryStat {
  // Non-reclaimable memory: v2 anon or v1 rss, counted as pages are mapped. (The reference reads
  // active_anon + inactive_anon, which lag behind allocation bursts; used only when the others
  // are missing.)
  int64_t anon_bytes = 0;
  // Page cache: v2 file or v1 cache (else active_file + inactive_file).
  int64_t file_bytes = 0;
  // The group's total charge (memory.usage_in_bytes or memory.current) when it was read with the
  // stat; -1 if not read. ParseMemoryStat leaves it at -1.
  int64_t usage_bytes = -1;
};

// Parses memory.stat text. `source` names the file in errors. Missing anon keys are an error.
absl::StatusOr<MemoryStat> ParseMemoryStat(std::string_view text, std::string_view source);

// Reads a file that holds one integer ("max" reads as INT64_MAX), such as memory.usage_in_bytes.
absl::StatusOr<int64_t> ReadInt64File(const std::string& path);
// Writes `value` to a cgroup control file; the error names the file.
absl::Status WriteFile(const std::string& path, std::string_view value);

// Whether this process has CAP_SYS_RESOURCE (which lifts PSI's 2-second window granularity).
bool HasCapSysResource();

}  // namespace autoscale::monitor::cgroup
