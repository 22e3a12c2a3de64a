// Recorded workloads: per-VM CPU and memory use over time, read from a CSV file.
//
// The file has a header line naming its columns, then one sample per line:
//
//   time_s,vm,cpu_cores,memory_mib
//   0,db-1,0.42,1850
//   300,db-1,1.37,2210
//   0,db-2,0.05,600
//
//   time_s      seconds; the earliest time in the file is the start of the simulation
//   vm          the VM's name (samples of several VMs may be interleaved in any order)
//   cpu_cores   CPU used, in cores (>= 0)
//   memory_mib  memory used, in MiB (>= 0)
//   lfc_working_set_mib  (optional) distinct MiB of pages the VM touches through its Local File
//               Cache in a minute (Demand::lfc_working_set_bytes; without the column: 0)
//
// Columns may come in any order, and other columns are ignored, so a file derived from the public
// Azure VM traces (vm_cpu_readings: timestamp, vmid, min/max/avg CPU in percent; vmtable: cores
// and memory) needs only its CPU percentages turned into cores and a memory column added.
// Empty lines and lines starting with '#' are skipped. A VM's demand holds its last sample's value
// until its next sample (before its first sample: the first one's).
//
//   absl::StatusOr<Trace> trace = ReadTraceCsv("azure-day1.csv");
//   // error: "azure-day1.csv:17: cpu_cores: 'abc' is not a number"
//   auto shared = std::make_shared<const Trace>(*std::move(trace));
//   std::unique_ptr<Workload> w = NewTraceWorkload(shared, 0);  // the first VM of the file
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/sim/workload.h"

namespace autoscale::sim {

struct TraceSample {
  // Since the start of the trace.
  absl::Duration time;
  Demand demand;
};

struct TraceVm {
  std::string name;
  // Sorted by time, at most one per time.
  std::vector<TraceSample> samples;
};

struct Trace {
  // In the order of their first line in the file.
  std::vector<TraceVm> vms;
  // The time of the last sample of any VM.
  absl::Duration end;
};

// Parses CSV text; `source` names it in errors ("<source>:<line>: <column>: <what>").
absl::StatusOr<Trace> ParseTraceCsv(std::string_view text, std::string_view source);
// Reads and parses a file; errors name the file.
absl::StatusOr<Trace> ReadTraceCsv(const std::string& path);

// The same from columns (for example NumPy arrays): sample i is (time_s[i], vm[i], cpu_cores[i],
// memory_mib[i], lfc_working_set_mib[i]); `lfc_working_set_mib` may be empty (all 0), the others
// must have one entry per sample. The same checks as the CSV, with errors
// "<source>:<i + 1>: <column>: <what>".
absl::StatusOr<Trace> TraceFromColumns(std::span<const double> time_s,
                                       std::span<const std::string> vm,
                                       std::span<const double> cpu_cores,
                                       std::span<const double> memory_mib,
                                       std::span<const double> lfc_working_set_mib,
                                       std::string_view source);

// The demand of `trace->vms[vm]` over time (kind "trace"). `vm` must be an index of trace->vms.
std::unique_ptr<Workload> NewTraceWorkload(std::shared_ptr<const Trace> trace, size_t vm);

}  // namespace autoscale::sim
