// The metrics the monitor reports to the agent: load averages (/proc/loadavg) and memory
// (/proc/meminfo) of the machine it runs on (the VM), plus LFC working-set windows when a cache
// provides them.
//
//   usage  = MemTotal - MemAvailable + 100 MiB   (the reference's usage term; the extra is an
//                                                 allowance for kernel memory)
//   cached = Cached
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autoscale/api/resources.pb.h"

namespace autoscale::monitor {

struct MemInfo {
  int64_t total_bytes = 0;
  int64_t available_bytes = 0;
  int64_t cached_bytes = 0;
};

// Parses /proc/meminfo text; `source` names it in errors.
absl::StatusOr<MemInfo> ParseMemInfo(std::string_view text, std::string_view source);

// The LFC working-set windows an operator's source wrote to `path`: up to 60 non-negative
// numbers (pages; window i is the working set of the last i+1 minutes), separated by white
// space, as the core's LFC goal reads them. Errors name the file and the bad token.
absl::StatusOr<std::vector<double>> ReadLfcWindowsFile(const std::string& path);
// A MetricsReader windows source that reads `path` (ReadLfcWindowsFile) on every call. A missing
// or malformed file gives no windows, so the agent's LFC goal waits, and is logged (every 30th
// time): the operator's source may not have written it yet.
std::function<std::vector<double>()> LfcWindowsFromFile(std::string path);

class MetricsReader {
 public:
  // `proc` is the procfs root ("/proc", or a fixture directory in tests). `lfc_windows`, if set,
  // returns the 60 working-set windows (pages).
  explicit MetricsReader(std::string proc = "/proc",
                         std::function<std::vector<double>()> lfc_windows = nullptr);

  absl::StatusOr<api::v1::Metrics> Read() const;
  absl::StatusOr<MemInfo> ReadMemInfo() const;

 private:
  const std::string proc_;
  const std::function<std::vector<double>()> lfc_windows_;
};

}  // namespace autoscale::monitor
