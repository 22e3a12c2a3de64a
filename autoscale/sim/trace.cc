#include "autoscale/sim/trace.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/base/units.h"
#include "glog/logging.h"

namespace autoscale::sim {
namespace {

enum Column { kTime, kVm, kCpu, kMemory, kColumns };
constexpr std::array<const char*, kColumns> kColumnNames = {"time_s", "vm", "cpu_cores",
                                                            "memory_mib"};

struct Parsed {
  double time;
  TraceSample sample;
  int line;
};

class TraceWorkload final : public Workload {
 public:
  TraceWorkload(std::shared_ptr<const Trace> trace, size_t vm)
      : trace_(std::move(trace)), samples_(trace_->vms[vm].samples) {}

  Demand At(absl::Duration t) override {
    if (samples_.empty()) return {};
    while (next_ + 1 < samples_.size() && samples_[next_ + 1].time <= t) ++next_;
    return samples_[next_].demand;
  }
  std::string kind() const override { return "trace"; }

 private:
  std::shared_ptr<const Trace> trace_;  // keeps samples_ alive
  const std::vector<TraceSample>& samples_;
  size_t next_ = 0;
};

}  // namespace

absl::StatusOr<Trace> ParseTraceCsv(std::string_view text, std::string_view source_view) {
  const std::string source(source_view);
  std::array<int, kColumns> index;
  index.fill(-1);
  size_t fields = 0;
  bool have_header = false;
  std::vector<std::string> names;
  absl::flat_hash_map<std::string, size_t> vm_index;
  std::vector<std::vector<Parsed>> per_vm;
  double earliest = INFINITY;
  int line_no = 0;

  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto error = [&](absl::string_view column, absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_no, ": ", column, column.empty() ? "" : ": ", what));
    };
    std::vector<absl::string_view> cells = absl::StrSplit(line, ',');
    for (absl::string_view& c : cells) c = absl::StripAsciiWhitespace(c);
    if (!have_header) {
      for (size_t i = 0; i < cells.size(); ++i) {
        for (int c = 0; c < kColumns; ++c) {
          if (cells[i] != kColumnNames[c]) continue;
          if (index[c] >= 0) return error(cells[i], "column named twice in the header");
          index[c] = static_cast<int>(i);
        }
      }
      for (int c = 0; c < kColumns; ++c) {
        if (index[c] < 0) {
          return error(
              "", absl::StrCat("the header lacks column '", kColumnNames[c],
                               "' (need time_s, vm, cpu_cores, memory_mib; got '", line, "')"));
        }
      }
      fields = cells.size();
      have_header = true;
      continue;
    }
    if (cells.size() != fields) {
      return error(
          "", absl::StrCat("expected ", fields, " fields as in the header, got ", cells.size()));
    }
    double value[kColumns] = {};
    for (int c : {kTime, kCpu, kMemory}) {
      absl::string_view cell = cells[index[c]];
      if (!absl::SimpleAtod(cell, &value[c]) || !std::isfinite(value[c])) {
        return error(kColumnNames[c], absl::StrCat("'", cell, "' is not a number"));
      }
      if (value[c] < 0) return error(kColumnNames[c], absl::StrCat(cell, " is negative"));
    }
    // The simulator's limits (workload.h).
    if (value[kMemory] > static_cast<double>(kMaxMemoryBytes / kMiB)) {
      return error(kColumnNames[kMemory],
                   absl::StrCat(cells[index[kMemory]], " is too large (at most ",
                                kMaxMemoryBytes / kMiB, ")"));
    }
    if (value[kCpu] > static_cast<double>(kMaxMilliCpu / 1000)) {
      return error(kColumnNames[kCpu], absl::StrCat(cells[index[kCpu]], " is too large (at most ",
                                                    kMaxMilliCpu / 1000, ")"));
    }
    if (value[kTime] > 1e12) {
      return error(kColumnNames[kTime], absl::StrCat(cells[index[kTime]], " is too large"));
    }
    absl::string_view vm = cells[index[kVm]];
    if (vm.empty()) return error("vm", "empty name");
    auto [it, added] = vm_index.try_emplace(std::string(vm), per_vm.size());
    if (added) {
      names.emplace_back(vm);
      per_vm.emplace_back();
    }
    earliest = std::min(earliest, value[kTime]);
    per_vm[it->second].push_back(
        {value[kTime],
         {absl::ZeroDuration(),
          {static_cast<int64_t>(std::llround(value[kCpu] * 1000)),
           static_cast<int64_t>(std::llround(value[kMemory] * static_cast<double>(kMiB)))}},
         line_no});
  }
  if (!have_header) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": empty trace (no header line)"));
  }
  if (per_vm.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": no samples"));

  Trace trace;
  trace.end = absl::ZeroDuration();
  for (size_t v = 0; v < per_vm.size(); ++v) {
    std::vector<Parsed>& p = per_vm[v];
    std::stable_sort(p.begin(), p.end(),
                     [](const Parsed& a, const Parsed& b) { return a.time < b.time; });
    TraceVm vm{names[v], {}};
    vm.samples.reserve(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      if (i > 0 && p[i].time == p[i - 1].time) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", std::max(p[i].line, p[i - 1].line), ": time_s: VM '",
                         names[v], "' has another sample at ", p[i].time, " s (line ",
                         std::min(p[i].line, p[i - 1].line), ")"));
      }
      TraceSample s = p[i].sample;
      s.time = absl::Seconds(p[i].time - earliest);
      trace.end = std::max(trace.end, s.time);
      vm.samples.push_back(s);
    }
    trace.vms.push_back(std::move(vm));
  }
  return trace;
}

absl::StatusOr<Trace> ReadTraceCsv(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseTraceCsv(text, path);
}

std::unique_ptr<Workload> NewTraceWorkload(std::shared_ptr<const Trace> trace, size_t vm) {
  CHECK(trace != nullptr && vm < trace->vms.size())
      << "NewTraceWorkload: no VM " << vm << " in a trace of "
      << (trace == nullptr ? 0 : trace->vms.size());
  return std::make_unique<TraceWorkload>(std::move(trace), vm);
}

}  // namespace autoscale::sim
