#include "autoscale/sim/trace.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
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

enum Column { kTime, kVm, kCpu, kMemory, kLfc, kColumns };
constexpr std::array<const char*, kColumns> kColumnNames = {"time_s", "vm", "cpu_cores",
                                                            "memory_mib", "lfc_working_set_mib"};

struct Parsed {
  double time;
  TraceSample sample;
  int line;
};

// Checks samples one by one and gathers them per VM; errors are "<source>:<line>: ...".
class TraceBuilder {
 public:
  explicit TraceBuilder(std::string source) : source_(std::move(source)) {}

  absl::Status Error(int line, absl::string_view column, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ":", line, ": ", column, column.empty() ? "" : ": ", what));
  }

  // `value[kVm]` is unused; `text(c)` is how column c was written (for errors).
  absl::Status Add(int line, const double (&value)[kColumns], absl::string_view vm,
                   absl::FunctionRef<std::string(int)> text) {
    for (int c : {kTime, kCpu, kMemory, kLfc}) {
      if (!std::isfinite(value[c])) {
        return Error(line, kColumnNames[c], absl::StrCat("'", text(c), "' is not a number"));
      }
      if (value[c] < 0) return Error(line, kColumnNames[c], absl::StrCat(text(c), " is negative"));
    }
    // The simulator's limits (workload.h).
    for (int c : {kMemory, kLfc}) {
      if (value[c] > static_cast<double>(kMaxMemoryBytes / kMiB)) {
        return Error(line, kColumnNames[c],
                     absl::StrCat(text(c), " is too large (at most ", kMaxMemoryBytes / kMiB, ")"));
      }
    }
    if (value[kCpu] > static_cast<double>(kMaxMilliCpu / 1000)) {
      return Error(line, kColumnNames[kCpu],
                   absl::StrCat(text(kCpu), " is too large (at most ", kMaxMilliCpu / 1000, ")"));
    }
    if (value[kTime] > 1e12) {
      return Error(line, kColumnNames[kTime], absl::StrCat(text(kTime), " is too large"));
    }
    if (vm.empty()) return Error(line, "vm", "empty name");
    auto [it, added] = vm_index_.try_emplace(std::string(vm), per_vm_.size());
    if (added) {
      names_.emplace_back(vm);
      per_vm_.emplace_back();
    }
    earliest_ = std::min(earliest_, value[kTime]);
    const double mib = static_cast<double>(kMiB);
    per_vm_[it->second].push_back(
        {value[kTime],
         {absl::ZeroDuration(),
          {.milli_cpu = static_cast<int64_t>(std::llround(value[kCpu] * 1000)),
           .memory_bytes = static_cast<int64_t>(std::llround(value[kMemory] * mib)),
           .lfc_working_set_bytes = static_cast<int64_t>(std::llround(value[kLfc] * mib))}},
         line});
    return absl::OkStatus();
  }

  absl::StatusOr<Trace> Finish() {
    if (per_vm_.empty()) return absl::InvalidArgumentError(absl::StrCat(source_, ": no samples"));
    Trace trace;
    trace.end = absl::ZeroDuration();
    for (size_t v = 0; v < per_vm_.size(); ++v) {
      std::vector<Parsed>& p = per_vm_[v];
      std::stable_sort(p.begin(), p.end(),
                       [](const Parsed& a, const Parsed& b) { return a.time < b.time; });
      TraceVm vm{names_[v], {}};
      vm.samples.reserve(p.size());
      for (size_t i = 0; i < p.size(); ++i) {
        if (i > 0 && p[i].time == p[i - 1].time) {
          return Error(std::max(p[i].line, p[i - 1].line), "time_s",
                       absl::StrCat("VM '", names_[v], "' has another sample at ", p[i].time,
                                    " s (line ", std::min(p[i].line, p[i - 1].line), ")"));
        }
        TraceSample s = p[i].sample;
        s.time = absl::Seconds(p[i].time - earliest_);
        trace.end = std::max(trace.end, s.time);
        vm.samples.push_back(s);
      }
      trace.vms.push_back(std::move(vm));
    }
    return trace;
  }

 private:
  std::string source_;
  std::vector<std::string> names_;
  absl::flat_hash_map<std::string, size_t> vm_index_;
  std::vector<std::vector<Parsed>> per_vm_;
  double earliest_ = INFINITY;
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
  TraceBuilder builder(source);
  std::array<int, kColumns> index;
  index.fill(-1);
  size_t fields = 0;
  bool have_header = false;
  int line_no = 0;

  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> cells = absl::StrSplit(line, ',');
    for (absl::string_view& c : cells) c = absl::StripAsciiWhitespace(c);
    if (!have_header) {
      for (size_t i = 0; i < cells.size(); ++i) {
        for (int c = 0; c < kColumns; ++c) {
          if (cells[i] != kColumnNames[c]) continue;
          if (index[c] >= 0)
            return builder.Error(line_no, cells[i], "column named twice in the header");
          index[c] = static_cast<int>(i);
        }
      }
      for (int c = 0; c < kColumns; ++c) {
        if (index[c] < 0 && c != kLfc) {
          return builder.Error(
              line_no, "",
              absl::StrCat("the header lacks column '", kColumnNames[c],
                           "' (need time_s, vm, cpu_cores, memory_mib; got '", line, "')"));
        }
      }
      fields = cells.size();
      have_header = true;
      continue;
    }
    if (cells.size() != fields) {
      return builder.Error(
          line_no, "",
          absl::StrCat("expected ", fields, " fields as in the header, got ", cells.size()));
    }
    double value[kColumns] = {};
    for (int c : {kTime, kCpu, kMemory, kLfc}) {
      if (index[c] < 0) continue;  // the optional column, absent: 0
      absl::string_view cell = cells[index[c]];
      if (!absl::SimpleAtod(cell, &value[c]) || !std::isfinite(value[c])) {
        return builder.Error(line_no, kColumnNames[c],
                             absl::StrCat("'", cell, "' is not a number"));
      }
    }
    RETURN_IF_ERROR(builder.Add(line_no, value, cells[index[kVm]],
                                [&](int c) { return std::string(cells[index[c]]); }));
  }
  if (!have_header) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": empty trace (no header line)"));
  }
  return builder.Finish();
}

absl::StatusOr<Trace> TraceFromColumns(std::span<const double> time_s,
                                       std::span<const std::string> vm,
                                       std::span<const double> cpu_cores,
                                       std::span<const double> memory_mib,
                                       std::span<const double> lfc_working_set_mib,
                                       std::string_view source_view) {
  const std::string source(source_view);
  const size_t n = time_s.size();
  if (vm.size() != n || cpu_cores.size() != n || memory_mib.size() != n ||
      (!lfc_working_set_mib.empty() && lfc_working_set_mib.size() != n)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the columns differ in length (time_s ", n, ", vm ", vm.size(),
                     ", cpu_cores ", cpu_cores.size(), ", memory_mib ", memory_mib.size(),
                     ", lfc_working_set_mib ", lfc_working_set_mib.size(), ")"));
  }
  TraceBuilder builder(source);
  for (size_t i = 0; i < n; ++i) {
    const double value[kColumns] = {time_s[i], 0, cpu_cores[i], memory_mib[i],
                                    lfc_working_set_mib.empty() ? 0 : lfc_working_set_mib[i]};
    RETURN_IF_ERROR(builder.Add(static_cast<int>(std::min<size_t>(i + 1, INT32_MAX)), value, vm[i],
                                [&](int c) { return absl::StrCat(value[c]); }));
  }
  return builder.Finish();
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
