#include "autoscale/base/prometheus.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/version.h"

namespace autoscale {
namespace {

std::string RenderLabels(const Metrics::Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    std::string value =
        absl::StrReplaceAll(labels[i].second, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
    absl::StrAppend(&out, i ? "," : "", labels[i].first, "=\"", value, "\"");
  }
  return out + "}";
}

// Whole numbers exactly (byte counts above 10^15 would lose digits in %.15g), others in the
// shortest form that is not noisy.
std::string Number(double v) {
  if (v == std::trunc(v) && std::fabs(v) < 0x1p53) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrFormat("%.15g", v);
}

// `labels` (rendered, possibly empty) with one more label added.
std::string WithLabel(const std::string& labels, const std::string& extra) {
  if (labels.empty()) return "{" + extra + "}";
  return labels.substr(0, labels.size() - 1) + "," + extra + "}";
}

}  // namespace

const std::vector<double> Metrics::kLatencyBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,     10,   30};

void Metrics::Describe(const std::string& name, Type type, const std::string& help) {
  absl::MutexLock lock(&mu_);
  Family& f = families_[name];
  f.type = type;
  f.help = help;
  f.described = true;
}

void Metrics::Set(const std::string& name, const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  families_[name].series[RenderLabels(labels)].value = value;
}

void Metrics::Add(const std::string& name, const Labels& labels, double delta) {
  absl::MutexLock lock(&mu_);
  families_[name].series[RenderLabels(labels)].value += delta;
}

void Metrics::Observe(const std::string& name, const Labels& labels, double value,
                      const std::vector<double>& buckets) {
  absl::MutexLock lock(&mu_);
  Series& s = families_[name].series[RenderLabels(labels)];
  if (s.bounds.empty()) {
    s.bounds = buckets;
    s.counts.assign(buckets.size(), 0);
  }
  auto it = std::lower_bound(s.bounds.begin(), s.bounds.end(), value);
  if (it != s.bounds.end()) s.counts[it - s.bounds.begin()] += 1;
  s.sum += value;
  s.value += 1;  // the count
}

void Metrics::Forget(const std::pair<std::string, std::string>& label) {
  const std::string needle = RenderLabels({label});
  const std::string inner = needle.substr(1, needle.size() - 2);
  absl::MutexLock lock(&mu_);
  for (auto& [name, family] : families_) {
    for (auto it = family.series.begin(); it != family.series.end();) {
      if (it->first.find(inner) != std::string::npos) {
        it = family.series.erase(it);
      } else {
        ++it;
      }
    }
  }
}

std::string Metrics::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    if (f.described) {
      absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ",
                      f.type == kCounter ? "counter"
                      : f.type == kGauge ? "gauge"
                                         : "histogram",
                      "\n");
    }
    for (const auto& [labels, s] : f.series) {
      if (f.type != kHistogram) {
        absl::StrAppend(&out, name, labels, " ", Number(s.value), "\n");
        continue;
      }
      double cumulative = 0;
      for (size_t i = 0; i < s.bounds.size(); ++i) {
        cumulative += s.counts[i];
        absl::StrAppend(&out, name, "_bucket",
                        WithLabel(labels, "le=\"" + Number(s.bounds[i]) + "\""), " ",
                        Number(cumulative), "\n");
      }
      absl::StrAppend(&out, name, "_bucket", WithLabel(labels, "le=\"+Inf\""), " ", Number(s.value),
                      "\n", name, "_sum", labels, " ", Number(s.sum), "\n", name, "_count", labels,
                      " ", Number(s.value), "\n");
    }
  }
  return out;
}

namespace {

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string ProcessMetricsText() {
  Metrics m;
  // /proc/self/stat: the fields after the command name (which may hold spaces and parentheses)
  // start at field 3, the state.
  const std::string stat = ReadFile("/proc/self/stat");
  const size_t paren = stat.rfind(')');
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  if (paren != std::string::npos && ticks > 0 && page > 0) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 1), ' ', absl::SkipEmpty());
    auto field = [&](size_t n, double* out) {  // n: the field's number in proc(5)
      return n - 3 < f.size() && absl::SimpleAtod(f[n - 3], out);
    };
    double utime, stime, start, vsize, rss;
    if (field(14, &utime) && field(15, &stime)) {
      m.Describe("process_cpu_seconds_total", Metrics::kCounter,
                 "User and system CPU time spent, in seconds.");
      m.Set("process_cpu_seconds_total", {}, (utime + stime) / ticks);
    }
    if (field(23, &vsize)) {
      m.Describe("process_virtual_memory_bytes", Metrics::kGauge, "Virtual memory size in bytes.");
      m.Set("process_virtual_memory_bytes", {}, vsize);
    }
    if (field(24, &rss)) {
      m.Describe("process_resident_memory_bytes", Metrics::kGauge,
                 "Resident memory size in bytes.");
      m.Set("process_resident_memory_bytes", {}, rss * page);
    }
    // The start time is in ticks since boot; /proc/stat's btime is the boot in Unix seconds.
    double btime = 0;
    for (absl::string_view line : absl::StrSplit(ReadFile("/proc/stat"), '\n')) {
      if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &btime)) break;
    }
    if (btime > 0 && field(22, &start)) {
      m.Describe("process_start_time_seconds", Metrics::kGauge,
                 "Start time of the process since the Unix epoch, in seconds.");
      m.Set("process_start_time_seconds", {}, btime + start / ticks);
    }
  }
  std::error_code error;
  std::filesystem::directory_iterator fds("/proc/self/fd", error);
  if (!error) {
    m.Describe("process_open_fds", Metrics::kGauge, "Open file descriptors.");
    m.Set("process_open_fds", {},
          static_cast<double>(std::distance(fds, std::filesystem::directory_iterator())));
  }
  m.Describe("autoscale_build_info", Metrics::kGauge,
             "1, labelled with the version of the running binary.");
  m.Set("autoscale_build_info", {{"version", Version()}}, 1);
  return m.Render();
}

}  // namespace autoscale
