#include "monitor/metrics.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::monitor {
namespace {

constexpr int64_t kKernelAllowance = int64_t{100} << 20;
// The core's LFC goal reads one window per minute of the last hour.
constexpr size_t kLfcWindows = 60;

}  // namespace

absl::StatusOr<MemInfo> ParseMemInfo(std::string_view text, std::string_view source) {
  MemInfo m;
  int found = 0;
  int line_no = 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(text.data(), text.size()), '\n', absl::SkipEmpty())) {
    ++line_no;
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 2) continue;
    int64_t* field = nullptr;
    if (f[0] == "MemTotal:") field = &m.total_bytes;
    if (f[0] == "MemAvailable:") field = &m.available_bytes;
    if (f[0] == "Cached:") field = &m.cached_bytes;
    if (field == nullptr) continue;
    int64_t kib;
    if (!absl::SimpleAtoi(f[1], &kib) || kib < 0 || (f.size() > 2 && f[2] != "kB")) {
      return absl::InvalidArgumentError(
          absl::StrCat(absl::string_view(source.data(), source.size()), ":", line_no,
                       ": bad value in '", line, "'"));
    }
    *field = kib * 1024;
    ++found;
  }
  if (found < 3) {
    return absl::InvalidArgumentError(absl::StrCat(absl::string_view(source.data(), source.size()),
                                                   ": needs MemTotal, MemAvailable and Cached"));
  }
  return m;
}

MetricsReader::MetricsReader(std::string proc, std::function<std::vector<double>()> lfc_windows)
    : proc_(std::move(proc)), lfc_windows_(std::move(lfc_windows)) {}

absl::StatusOr<MemInfo> MetricsReader::ReadMemInfo() const {
  const std::string path = proc_ + "/meminfo";
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseMemInfo(text, path);
}

absl::StatusOr<api::v1::Metrics> MetricsReader::Read() const {
  const std::string loadavg = proc_ + "/loadavg";
  ASSIGN_OR_RETURN(std::string text, ReadFile(loadavg));
  std::vector<absl::string_view> f = absl::StrSplit(text, ' ', absl::SkipEmpty());
  double load1, load5;
  if (f.size() < 2 || !absl::SimpleAtod(f[0], &load1) || !absl::SimpleAtod(f[1], &load5) ||
      !std::isfinite(load1) || !std::isfinite(load5) || load1 < 0 || load5 < 0) {
    return absl::InvalidArgumentError(absl::StrCat(loadavg, ": malformed: '", text, "'"));
  }
  ASSIGN_OR_RETURN(MemInfo mem, ReadMemInfo());
  api::v1::Metrics m;
  m.set_load_avg_1m(load1);
  m.set_load_avg_5m(load5);
  m.set_memory_usage_bytes(mem.total_bytes - mem.available_bytes + kKernelAllowance);
  m.set_memory_cached_bytes(mem.cached_bytes);
  if (lfc_windows_) {
    for (double w : lfc_windows_()) m.add_lfc_working_set_pages(w);
  }
  return m;
}

absl::StatusOr<std::vector<double>> ReadLfcWindowsFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<double> windows;
  for (absl::string_view token :
       absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    double v;
    if (!absl::SimpleAtod(token, &v) || !std::isfinite(v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": LFC window ", windows.size() + 1,
                                                     " is \"", token.substr(0, 32),
                                                     "\", not a number of pages"));
    }
    if (windows.size() == kLfcWindows) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": more than ", kLfcWindows, " LFC windows"));
    }
    windows.push_back(v);
  }
  return windows;
}

std::function<std::vector<double>()> LfcWindowsFromFile(std::string path) {
  return [path = std::move(path)] {
    absl::StatusOr<std::vector<double>> windows = ReadLfcWindowsFile(path);
    if (windows.ok()) return *std::move(windows);
    LOG_EVERY_N(WARNING, 30) << "monitor: " << windows.status();
    return std::vector<double>();
  };
}

}  // namespace autoscale::monitor
