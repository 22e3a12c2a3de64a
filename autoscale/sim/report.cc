#include "autoscale/sim/report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/units.h"
#include "autoscale/sim/internal/share.h"
#include "autoscale/sim/internal/svg.h"

namespace autoscale::sim {
namespace {

const char* const kRunColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"};
constexpr const char* kDemandColor = "#d62728";

const char* RunColor(size_t i) {
  return kRunColors[i % (sizeof(kRunColors) / sizeof(*kRunColors))];
}

double Gib(double bytes) { return bytes / kGiB; }

double Hours(absl::Duration d) { return absl::ToDoubleHours(d); }

// "850 ms", "12.5 s", "7.2 min", "3.25 h".
std::string Short(absl::Duration d) {
  const double s = absl::ToDoubleSeconds(d);
  if (s < 1) return absl::StrFormat("%.0f ms", s * 1000);
  if (s < 60) return absl::StrFormat("%.1f s", s);
  if (s < 3600) return absl::StrFormat("%.1f min", s / 60);
  return absl::StrFormat("%.2f h", s / 3600);
}

std::string Pct(double part, double whole) {
  return whole > 0 ? absl::StrFormat("%.2f%%", 100 * part / whole) : "-";
}

// Nearest rank.
absl::Duration Percentile(const std::vector<absl::Duration>& sorted, double q) {
  if (sorted.empty()) return absl::ZeroDuration();
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::vector<std::pair<std::string, std::vector<std::string>>> Rows(
    const std::vector<std::pair<std::string, Summary>>& runs) {
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;
  auto row = [&](std::string name, auto value) {
    std::vector<std::string> cells;
    for (const auto& [label, s] : runs) cells.push_back(value(s));
    rows.emplace_back(std::move(name), std::move(cells));
  };
  row("VMs / nodes", [](const Summary& s) { return absl::StrCat(s.vms, " / ", s.nodes); });
  row("simulated time, VM-steps",
      [](const Summary& s) { return absl::StrCat(Short(s.duration), ", ", s.vm_steps); });
  row("CU-hours allocated", [](const Summary& s) {
    return absl::StrFormat("%.1f (%s of static peak)", s.cu_hours_allocated,
                           Pct(s.cu_hours_allocated, s.cu_hours_static_peak));
  });
  row("CU-hours of demand", [](const Summary& s) {
    return absl::StrFormat("%.1f (%s of allocated)", s.cu_hours_demand,
                           Pct(s.cu_hours_demand, s.cu_hours_allocated));
  });
  row("CU-hours at static peak / at max bound", [](const Summary& s) {
    return absl::StrFormat("%.1f / %.1f", s.cu_hours_static_peak, s.cu_hours_max_bound);
  });
  row("under-provisioned VM-time", [](const Summary& s) {
    return absl::StrCat(
        Short(s.under_provisioned), " (",
        Pct(absl::ToDoubleSeconds(s.under_provisioned), absl::ToDoubleSeconds(s.vm_time)),
        " of VM-time)");
  });
  row("  of which CPU short / memory short", [](const Summary& s) {
    return absl::StrCat(Short(s.cpu_short), " / ", Short(s.memory_short));
  });
  row("VMs ever under-provisioned",
      [](const Summary& s) { return absl::StrCat(s.vms_ever_under, " of ", s.vms); });
  row("memory shortfalls (demand > memory)",
      [](const Summary& s) { return absl::StrCat(s.memory_shortfalls); });
  row("memory pressure events (monitor upscale requests)",
      [](const Summary& s) { return absl::StrCat(s.memory_pressure_events); });
  row("goal decided by: CPU / memory / memory+LFC cache / LFC", [](const Summary& s) {
    const double n = static_cast<double>(s.metrics);
    return absl::StrCat(Pct(static_cast<double>(s.goal_by_cpu), n), " / ",
                        Pct(static_cast<double>(s.goal_by_memory), n), " / ",
                        Pct(static_cast<double>(s.goal_by_memory_total), n), " / ",
                        s.lfc_enabled ? Pct(static_cast<double>(s.goal_by_lfc), n) : "LFC off");
  });
  row("scheduler requests (asking to grow)", [](const Summary& s) {
    return absl::StrCat(s.scheduler_requests, " (", s.growth_requests, ")");
  });
  row("growth: full grants / partial grants / denials", [](const Summary& s) {
    return absl::StrCat(s.full_grants, " / ", s.partial_grants, " / ", s.denials);
  });
  row("VM resizes: up / down / failed", [](const Summary& s) {
    return absl::StrCat(s.upscales, " / ", s.downscales, " / ", s.resize_failures);
  });
  row("monitor: downscales denied / requests failed", [](const Summary& s) {
    return absl::StrCat(s.downscale_denials, " / ", s.monitor_failures);
  });
  row("scheduler answers lost / invalid permits", [](const Summary& s) {
    return absl::StrCat(s.scheduler_failures, " / ", s.invalid_permits);
  });
  row("migrations: done / failed (VM-time migrating)", [](const Summary& s) {
    return absl::StrCat(s.migrations, " / ", s.migration_failures, " (", Short(s.migrating), ")");
  });
  row("reaction time: upscales met", [](const Summary& s) {
    return absl::StrCat(s.reactions, " (", s.reactions_abandoned, " wishes gone before)");
  });
  row("reaction time: mean / p50 / p90 / p99 / max", [](const Summary& s) {
    if (s.reactions == 0) return std::string("-");
    return absl::StrCat(Short(s.reaction_mean), " / ", Short(s.reaction_p50), " / ",
                        Short(s.reaction_p90), " / ", Short(s.reaction_p99), " / ",
                        Short(s.reaction_max));
  });
  row("node reservation: mean / peak", [](const Summary& s) {
    return absl::StrFormat("%.1f%% / %.1f%%", 100 * s.node_reserved_mean,
                           100 * s.node_reserved_peak);
  });
  return rows;
}

std::string CsvCell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string G(double v) { return absl::StrFormat("%.6g", v); }

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}
std::string Sec(absl::Duration d) { return absl::StrFormat("%.3f", absl::ToDoubleSeconds(d)); }

// Fleet totals over time, from the node samples.
struct Fleet {
  std::vector<double> hours, allocated_cpu, demand_cpu, allocated_gib, demand_gib;
};

Fleet FleetOf(const Results& r) {
  Fleet f;
  for (const NodeSample& s : r.node_series) {
    DemandTotal allocated, demand;  // in double: a large fleet's sums do not overflow
    for (size_t n = 0; n < s.allocated.size(); ++n) {
      allocated.milli_cpu += static_cast<double>(s.allocated[n].milli_cpu);
      allocated.memory_bytes += static_cast<double>(s.allocated[n].memory_bytes);
      demand.milli_cpu += s.demand[n].milli_cpu;
      demand.memory_bytes += s.demand[n].memory_bytes;
    }
    f.hours.push_back(Hours(s.time));
    f.allocated_cpu.push_back(allocated.milli_cpu / 1000);
    f.demand_cpu.push_back(demand.milli_cpu / 1000);
    f.allocated_gib.push_back(Gib(allocated.memory_bytes));
    f.demand_gib.push_back(Gib(demand.memory_bytes));
  }
  return f;
}

std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::string out = "<table><thead><tr>";
  for (const std::string& h : header) absl::StrAppend(&out, "<th>", HtmlEscape(h), "</th>");
  out += "</tr></thead><tbody>";
  for (const auto& row : rows) {
    out += "<tr>";
    for (const std::string& c : row) absl::StrAppend(&out, "<td>", HtmlEscape(c), "</td>");
    out += "</tr>";
  }
  return out + "</tbody></table>";
}

const VmSeries* FindSeries(const Results& r, uint32_t vm) {
  for (const VmSeries& s : r.vm_series) {
    if (s.vm == vm) return &s;
  }
  return nullptr;
}

constexpr const char* kStyle = R"css(
body { font-family: sans-serif; margin: 24px; color: #222222; max-width: 1500px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #dddddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #dddddd; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
.row { display: flex; flex-wrap: wrap; gap: 12px; }
.note { color: #555555; font-size: 13px; max-width: 1100px; }
dt { font-weight: bold; margin-top: 6px; } dd { margin-left: 16px; font-size: 13px; }
)css";

}  // namespace

const ReactionBins& DefaultReactionBins() {
  static const ReactionBins* bins = [] {
    auto* b = new ReactionBins;
    const double upper_s[] = {0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300};
    const char* labels[] = {"<0.1s", "0.1-0.2s", "0.2-0.5s", "0.5-1s", "1-2s", "2-5s",
                            "5-10s", "10-30s",   "30-60s",   "1-5min", ">5min"};
    for (double s : upper_s) b->upper.push_back(absl::Seconds(s));
    b->upper.push_back(absl::InfiniteDuration());
    for (const char* l : labels) b->labels.push_back(l);
    return b;
  }();
  return *bins;
}

std::vector<int64_t> ReactionBins::Count(const std::vector<absl::Duration>& times) const {
  std::vector<int64_t> counts(upper.size(), 0);
  for (absl::Duration t : times) {
    size_t i = 0;
    while (i + 1 < upper.size() && t >= upper[i]) ++i;
    ++counts[i];
  }
  return counts;
}

Summary Summarize(const Results& r) {
  Summary s;
  s.vms = r.vms.size();
  s.nodes = r.node_names.size();
  s.duration = r.duration;
  s.vm_steps = r.vm_steps;
  s.lfc_enabled = r.scaling.enable_lfc_metrics;
  const double hours = Hours(r.duration);
  s.vm_time = r.duration * static_cast<double>(r.vms.size());
  s.cu_hours_max_bound = static_cast<double>(r.bounds.max_cu) * hours * static_cast<double>(s.vms);
  std::vector<absl::Duration> reactions;
  for (const VmResult& v : r.vms) {
    s.cu_hours_allocated += v.cu_hours_allocated;
    s.cu_hours_demand += v.cu_hours_demand;
    s.cu_hours_static_peak += v.static_peak_cu * hours;
    s.under_provisioned += v.under_provisioned;
    s.cpu_short += v.cpu_short;
    s.memory_short += v.memory_short;
    if (v.under_provisioned > absl::ZeroDuration()) ++s.vms_ever_under;
    s.memory_shortfalls += v.memory_shortfalls;
    s.memory_pressure_events += v.memory_pressure_events;
    s.metrics += v.metrics;
    s.goal_by_cpu += v.goal_by_cpu;
    s.goal_by_memory += v.goal_by_memory;
    s.goal_by_memory_total += v.goal_by_memory_total;
    s.goal_by_lfc += v.goal_by_lfc;
    s.scheduler_requests += v.scheduler_requests;
    s.growth_requests += v.growth_requests;
    s.full_grants += v.full_grants;
    s.partial_grants += v.partial_grants;
    s.denials += v.denials;
    s.scheduler_failures += v.scheduler_failures;
    s.invalid_permits += v.invalid_permits;
    s.upscales += v.upscales;
    s.downscales += v.downscales;
    s.resize_failures += v.resize_failures;
    s.downscale_denials += v.downscale_denials;
    s.monitor_failures += v.monitor_failures;
    s.migrations += v.migrations;
    s.migration_failures += v.migration_failures;
    s.migrating += v.migrating;
    s.reactions_abandoned += v.reactions_abandoned;
    reactions.insert(reactions.end(), v.reaction_times.begin(), v.reaction_times.end());
  }
  std::sort(reactions.begin(), reactions.end());
  s.reactions = static_cast<int64_t>(reactions.size());
  if (!reactions.empty()) {
    absl::Duration sum;
    for (absl::Duration d : reactions) sum += d;
    s.reaction_mean = sum / static_cast<double>(reactions.size());
    s.reaction_p50 = Percentile(reactions, 0.5);
    s.reaction_p90 = Percentile(reactions, 0.9);
    s.reaction_p99 = Percentile(reactions, 0.99);
    s.reaction_max = reactions.back();
  }
  s.reaction_bins = DefaultReactionBins().Count(reactions);
  double sum = 0;
  int64_t n = 0;
  for (const NodeSample& sample : r.node_series) {
    for (size_t i = 0; i < sample.reserved.size() && i < r.node_totals.size(); ++i) {
      const double f = LargerShare(sample.reserved[i], r.node_totals[i]);
      sum += f;
      ++n;
      s.node_reserved_peak = std::max(s.node_reserved_peak, f);
    }
  }
  if (n > 0) s.node_reserved_mean = sum / static_cast<double>(n);
  return s;
}

std::string FormatSummaries(const std::vector<std::pair<std::string, Summary>>& runs) {
  const auto rows = Rows(runs);
  size_t name_width = 0;
  for (const auto& [name, cells] : rows) name_width = std::max(name_width, name.size());
  std::vector<size_t> widths;
  for (const auto& [label, s] : runs) widths.push_back(label.size());
  for (const auto& [name, cells] : rows) {
    for (size_t i = 0; i < cells.size(); ++i) widths[i] = std::max(widths[i], cells[i].size());
  }
  auto line = [&](const std::string& name, const std::vector<std::string>& cells) {
    std::string out = absl::StrFormat("%-*s", static_cast<int>(name_width), name);
    for (size_t i = 0; i < cells.size(); ++i) {
      absl::StrAppend(&out, "  ", absl::StrFormat("%-*s", static_cast<int>(widths[i]), cells[i]));
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::vector<std::string> labels;
  for (const auto& [label, s] : runs) labels.push_back(label);
  std::string out = line("", labels);
  for (const auto& [name, cells] : rows) out += line(name, cells);
  return out;
}

std::string VmCsv(const Results& r) {
  std::string out =
      "vm,workload,node,initial_cu,final_cu,peak_cu,static_peak_cu,peak_demand_cpu_cores,"
      "peak_demand_memory_gib,peak_lfc_working_set_gib,cu_hours_allocated,cu_hours_demand,"
      "cu_hours_static_peak,under_provisioned_s,under_provisioned_share,cpu_short_s,"
      "memory_short_s,memory_shortfalls,memory_pressure_events,metrics,goal_by_cpu,goal_by_memory,"
      "goal_by_memory_total,goal_by_lfc,scheduler_requests,growth_requests,full_grants,"
      "partial_grants,"
      "denials,scheduler_answers_lost,invalid_permits,upscales,downscales,resize_failures,"
      "downscale_denials,monitor_failures,migrations,migration_failures,migrating_s,reactions,"
      "reaction_mean_s,reaction_max_s,reactions_abandoned\n";
  const double hours = Hours(r.duration);
  for (const VmResult& v : r.vms) {
    absl::Duration sum, max;
    for (absl::Duration d : v.reaction_times) sum += d, max = std::max(max, d);
    const absl::Duration mean = v.reaction_times.empty()
                                    ? absl::ZeroDuration()
                                    : sum / static_cast<double>(v.reaction_times.size());
    std::vector<std::string> cells = {
        CsvCell(v.name),
        CsvCell(v.workload),
        CsvCell(v.node),
        G(LargerShare(v.initial, r.compute_unit)),
        G(LargerShare(v.final_size, r.compute_unit)),
        G(LargerShare(v.peak_size, r.compute_unit)),
        absl::StrCat(v.static_peak_cu),
        G(v.peak_demand.milli_cpu / 1000.0),
        G(Gib(v.peak_demand.memory_bytes)),
        G(Gib(v.peak_demand.lfc_working_set_bytes)),
        G(v.cu_hours_allocated),
        G(v.cu_hours_demand),
        G(v.static_peak_cu * hours),
        Sec(v.under_provisioned),
        G(r.duration > absl::ZeroDuration() ? absl::FDivDuration(v.under_provisioned, r.duration)
                                            : 0),
        Sec(v.cpu_short),
        Sec(v.memory_short),
        absl::StrCat(v.memory_shortfalls),
        absl::StrCat(v.memory_pressure_events),
        absl::StrCat(v.metrics),
        absl::StrCat(v.goal_by_cpu),
        absl::StrCat(v.goal_by_memory),
        absl::StrCat(v.goal_by_memory_total),
        absl::StrCat(v.goal_by_lfc),
        absl::StrCat(v.scheduler_requests),
        absl::StrCat(v.growth_requests),
        absl::StrCat(v.full_grants),
        absl::StrCat(v.partial_grants),
        absl::StrCat(v.denials),
        absl::StrCat(v.scheduler_failures),
        absl::StrCat(v.invalid_permits),
        absl::StrCat(v.upscales),
        absl::StrCat(v.downscales),
        absl::StrCat(v.resize_failures),
        absl::StrCat(v.downscale_denials),
        absl::StrCat(v.monitor_failures),
        absl::StrCat(v.migrations),
        absl::StrCat(v.migration_failures),
        Sec(v.migrating),
        absl::StrCat(v.reaction_times.size()),
        Sec(mean),
        Sec(max),
        absl::StrCat(v.reactions_abandoned)};
    absl::StrAppend(&out, absl::StrJoin(cells, ","), "\n");
  }
  return out;
}

std::string SummaryJson(const std::vector<std::pair<std::string, Summary>>& runs) {
  std::string out = "{\"runs\": [";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& [label, s] = runs[i];
    std::vector<std::string> fields;
    auto add = [&](const char* name, const std::string& value) {
      fields.push_back(absl::StrCat("\"", name, "\": ", value));
    };
    auto num = [](double v) { return std::isfinite(v) ? absl::StrFormat("%.10g", v) : "null"; };
    auto sec = [&](absl::Duration d) { return num(absl::ToDoubleSeconds(d)); };
    auto n = [](int64_t v) { return absl::StrCat(v); };
    add("label", JsonString(label));
    add("vms", n(static_cast<int64_t>(s.vms)));
    add("nodes", n(static_cast<int64_t>(s.nodes)));
    add("duration_s", sec(s.duration));
    add("vm_steps", n(s.vm_steps));
    add("cu_hours_allocated", num(s.cu_hours_allocated));
    add("cu_hours_demand", num(s.cu_hours_demand));
    add("cu_hours_static_peak", num(s.cu_hours_static_peak));
    add("cu_hours_max_bound", num(s.cu_hours_max_bound));
    add("vm_time_s", sec(s.vm_time));
    add("under_provisioned_s", sec(s.under_provisioned));
    add("cpu_short_s", sec(s.cpu_short));
    add("memory_short_s", sec(s.memory_short));
    add("vms_ever_under", n(static_cast<int64_t>(s.vms_ever_under)));
    add("memory_shortfalls", n(s.memory_shortfalls));
    add("memory_pressure_events", n(s.memory_pressure_events));
    add("metrics", n(s.metrics));
    add("goal_by_cpu", n(s.goal_by_cpu));
    add("goal_by_memory", n(s.goal_by_memory));
    add("goal_by_memory_total", n(s.goal_by_memory_total));
    add("goal_by_lfc", n(s.goal_by_lfc));
    add("lfc_enabled", s.lfc_enabled ? "true" : "false");
    add("scheduler_requests", n(s.scheduler_requests));
    add("growth_requests", n(s.growth_requests));
    add("full_grants", n(s.full_grants));
    add("partial_grants", n(s.partial_grants));
    add("denials", n(s.denials));
    add("scheduler_answers_lost", n(s.scheduler_failures));
    add("invalid_permits", n(s.invalid_permits));
    add("upscales", n(s.upscales));
    add("downscales", n(s.downscales));
    add("resize_failures", n(s.resize_failures));
    add("downscale_denials", n(s.downscale_denials));
    add("monitor_failures", n(s.monitor_failures));
    add("migrations", n(s.migrations));
    add("migration_failures", n(s.migration_failures));
    add("migrating_s", sec(s.migrating));
    add("reactions", n(s.reactions));
    add("reactions_abandoned", n(s.reactions_abandoned));
    add("reaction_mean_s", sec(s.reaction_mean));
    add("reaction_p50_s", sec(s.reaction_p50));
    add("reaction_p90_s", sec(s.reaction_p90));
    add("reaction_p99_s", sec(s.reaction_p99));
    add("reaction_max_s", sec(s.reaction_max));
    std::vector<std::string> bins;
    const ReactionBins& b = DefaultReactionBins();
    for (size_t k = 0; k < s.reaction_bins.size() && k < b.labels.size(); ++k) {
      bins.push_back(absl::StrCat(JsonString(b.labels[k]), ": ", s.reaction_bins[k]));
    }
    add("reaction_bins", absl::StrCat("{", absl::StrJoin(bins, ", "), "}"));
    add("node_reserved_mean", num(s.node_reserved_mean));
    add("node_reserved_peak", num(s.node_reserved_peak));
    absl::StrAppend(&out, i > 0 ? ",\n  " : "\n  ", "{", absl::StrJoin(fields, ", "), "}");
  }
  return out + "\n]}\n";
}

std::string SeriesCsv(const Results& r) {
  std::string out =
      "time_s,node,reserved_milli_cpu,reserved_memory_bytes,allocated_milli_cpu,"
      "allocated_memory_bytes,demand_milli_cpu,demand_memory_bytes,used_milli_cpu,"
      "used_memory_bytes,shortage_milli_cpu,shortage_memory_bytes\n";
  auto whole = [](double v) { return absl::StrFormat("%.0f", v); };
  for (const NodeSample& s : r.node_series) {
    const std::string time = Sec(s.time);
    // The fleet's totals, then each node.
    DemandTotal reserved, allocated, demand, used, shortage;
    auto total = [](DemandTotal& t, double cpu, double memory) {
      t.milli_cpu += cpu;
      t.memory_bytes += memory;
    };
    const size_t nodes = s.reserved.size();
    for (size_t n = 0; n < nodes; ++n) {
      total(reserved, static_cast<double>(s.reserved[n].milli_cpu),
            static_cast<double>(s.reserved[n].memory_bytes));
      total(allocated, static_cast<double>(s.allocated[n].milli_cpu),
            static_cast<double>(s.allocated[n].memory_bytes));
      total(demand, s.demand[n].milli_cpu, s.demand[n].memory_bytes);
      if (n < s.used.size()) total(used, s.used[n].milli_cpu, s.used[n].memory_bytes);
      if (n < s.shortage.size()) {
        total(shortage, s.shortage[n].milli_cpu, s.shortage[n].memory_bytes);
      }
    }
    auto line = [&](const std::string& node, const DemandTotal& res, const DemandTotal& alloc,
                    const DemandTotal& dem, const DemandTotal& u, const DemandTotal& lack) {
      absl::StrAppend(&out, time, ",", CsvCell(node), ",", whole(res.milli_cpu), ",",
                      whole(res.memory_bytes), ",", whole(alloc.milli_cpu), ",",
                      whole(alloc.memory_bytes), ",", whole(dem.milli_cpu), ",",
                      whole(dem.memory_bytes), ",", whole(u.milli_cpu), ",", whole(u.memory_bytes),
                      ",", whole(lack.milli_cpu), ",", whole(lack.memory_bytes), "\n");
    };
    line("fleet", reserved, allocated, demand, used, shortage);
    for (size_t n = 0; n < nodes; ++n) {
      auto of = [](const core::Resources& x) {
        return DemandTotal{static_cast<double>(x.milli_cpu), static_cast<double>(x.memory_bytes)};
      };
      line(n < r.node_names.size() ? r.node_names[n] : absl::StrCat(n), of(s.reserved[n]),
           of(s.allocated[n]), s.demand[n], n < s.used.size() ? s.used[n] : DemandTotal{},
           n < s.shortage.size() ? s.shortage[n] : DemandTotal{});
    }
  }
  return out;
}

std::string HtmlReport(const std::vector<ReportRun>& runs) {
  std::string out;
  std::vector<std::pair<std::string, Summary>> summaries;
  for (const ReportRun& run : runs) summaries.emplace_back(run.label, Summarize(*run.results));
  const Results* first = runs.empty() ? nullptr : runs.front().results;

  absl::StrAppend(&out,
                  "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
                  "<title>autoscale fleet simulation</title><style>",
                  kStyle, "</style></head><body>\n<h1>autoscale fleet simulation</h1>\n");
  if (first == nullptr) return out + "<p>No runs.</p></body></html>\n";
  absl::StrAppend(
      &out, "<p class=\"note\">", first->vms.size(), " VMs on ", first->node_names.size(),
      " nodes for ", HtmlEscape(Short(first->duration)), " of simulated time in steps of ",
      HtmlEscape(Short(first->step)),
      ". Every VM runs the project's own scaling core (<code>core::State</code>) and the in-VM "
      "monitor's rules (<code>MonitorModel</code>, held to <code>monitor::Monitor</code> by a "
      "test); every node is a node of the scheduler's ledger (<code>ledger::Ledger</code>). "
      "Only the workloads, the latencies and the failures of the peers are simulated.</p>\n");

  // Setup.
  out += "<h2>Setup</h2>\n";
  {
    std::vector<std::string> header = {"setting"};
    for (const ReportRun& run : runs) header.push_back(run.label);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> keys;
    for (const ReportRun& run : runs) {
      for (const auto& [k, v] : run.settings) {
        if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
      }
    }
    for (const std::string& k : keys) {
      std::vector<std::string> row = {k};
      for (const ReportRun& run : runs) {
        std::string value = "";
        for (const auto& [key, v] : run.settings) {
          if (key == k) value = v;
        }
        row.push_back(value);
      }
      rows.push_back(std::move(row));
    }
    out += Table(header, rows);
  }

  // Summary.
  out += "\n<h2>Summary</h2>\n";
  {
    std::vector<std::string> header = {""};
    for (const ReportRun& run : runs) header.push_back(run.label);
    std::vector<std::vector<std::string>> rows;
    for (auto& [name, cells] : Rows(summaries)) {
      std::vector<std::string> row = {name};
      row.insert(row.end(), cells.begin(), cells.end());
      rows.push_back(std::move(row));
    }
    out += Table(header, rows);
  }

  // Fleet totals.
  out +=
      "\n<h2>Fleet</h2>\n<p class=\"note\">What the VMs asked for (demand) and what they had "
      "(allocated), summed over the fleet; what the ledger reserved is under Nodes.</p>\n"
      "<div class=\"row\">";
  for (int memory = 0; memory < 2; ++memory) {
    LineChart c{.title = memory ? "Fleet memory" : "Fleet CPU",
                .x_label = "hours",
                .y_label = memory ? "GiB" : "cores",
                .width = 720,
                .height = 280};
    for (size_t i = 0; i < runs.size(); ++i) {
      const Fleet f = FleetOf(*runs[i].results);
      const std::string suffix = runs.size() > 1 ? absl::StrCat(" (", runs[i].label, ")") : "";
      if (i == 0) {
        c.series.push_back({.name = "demand",
                            .color = kDemandColor,
                            .x = f.hours,
                            .y = memory ? f.demand_gib : f.demand_cpu});
      }
      c.series.push_back({.name = "allocated" + suffix,
                          .color = RunColor(i),
                          .x = f.hours,
                          .y = memory ? f.allocated_gib : f.allocated_cpu});
    }
    out += RenderLineChart(c);
  }
  out += "</div>\n";

  // What decided the goals.
  out +=
      "\n<h2>Goal</h2>\n<p class=\"note\">Which part of the scaling core's goal "
      "(<code>core::ComputeGoal</code>) was the largest, over all the metrics the agents got: "
      "the load average (CPU), memory usage, memory usage plus the cached part of the LFC "
      "working set, or the LFC working set itself (with <code>enableLFCMetrics</code>). The "
      "recorded VMs below show each part over time.</p>\n";
  {
    BarChart c{.title = "Goal decided by",
               .y_label = "% of metrics",
               .categories = {"CPU", "memory", "memory + LFC cache", "LFC"},
               .width = 720,
               .height = 260};
    for (size_t i = 0; i < runs.size(); ++i) {
      const Summary& sum = summaries[i].second;
      const double n = sum.metrics > 0 ? static_cast<double>(sum.metrics) : 1;
      c.groups.push_back({.name = runs[i].label,
                          .color = RunColor(i),
                          .values = {100 * static_cast<double>(sum.goal_by_cpu) / n,
                                     100 * static_cast<double>(sum.goal_by_memory) / n,
                                     100 * static_cast<double>(sum.goal_by_memory_total) / n,
                                     100 * static_cast<double>(sum.goal_by_lfc) / n}});
    }
    out += RenderBarChart(c);
  }

  // Nodes.
  out +=
      "\n<h2>Nodes</h2>\n<p class=\"note\">Each node's reservation as a share of its total "
      "(the larger of CPU and memory). The dashed line is the watermark above which the "
      "ledger migrates VMs away.</p>\n<div class=\"row\">";
  for (size_t i = 0; i < runs.size(); ++i) {
    const Results& r = *runs[i].results;
    LineChart c{
        .title = absl::StrCat("Node reservation", runs.size() > 1 ? " (" : "",
                              runs.size() > 1 ? runs[i].label : "", runs.size() > 1 ? ")" : ""),
        .x_label = "hours",
        .y_label = "% of node total",
        .width = 720,
        .height = 280,
        .reference_lines = {100 * r.watermark}};
    const size_t nodes = r.node_names.size();
    std::vector<double> hours;
    std::vector<std::vector<double>> per_node(nodes);
    for (const NodeSample& s : r.node_series) {
      hours.push_back(Hours(s.time));
      for (size_t n = 0; n < nodes; ++n) {
        per_node[n].push_back(100 * LargerShare(s.reserved[n], r.node_totals[n]));
      }
    }
    if (nodes <= 30) {
      c.legend = false;
      for (size_t n = 0; n < nodes; ++n) {
        c.series.push_back(
            {.name = r.node_names[n],
             .color = absl::StrFormat("hsl(%d, 60%%, 45%%)", static_cast<int>(n * 360 / nodes)),
             .x = hours,
             .y = per_node[n],
             .width = 1});
      }
    } else {
      std::vector<double> lo, mean, hi;
      for (size_t k = 0; k < hours.size(); ++k) {
        double a = 1e300, b = 0, sum = 0;
        for (size_t n = 0; n < nodes; ++n) {
          a = std::min(a, per_node[n][k]);
          b = std::max(b, per_node[n][k]);
          sum += per_node[n][k];
        }
        lo.push_back(a);
        hi.push_back(b);
        mean.push_back(sum / static_cast<double>(nodes));
      }
      c.series.push_back({.name = "highest node", .color = "#d62728", .x = hours, .y = hi});
      c.series.push_back({.name = "mean", .color = RunColor(i), .x = hours, .y = mean});
      c.series.push_back({.name = "lowest node", .color = "#2ca02c", .x = hours, .y = lo});
    }
    out += RenderLineChart(c);
  }
  out += "</div>\n";

  // Reaction times.
  out +=
      "\n<h2>Reaction times</h2>\n<p class=\"note\">From the moment the scaling core wanted "
      "more than a VM had (after metrics or a monitor request) to the moment the VM had it: "
      "the scheduler's permit, the hotplug, and any waiting for room on the node.</p>\n";
  {
    const ReactionBins& bins = DefaultReactionBins();
    BarChart c{.title = "Reaction times",
               .y_label = "upscales (log scale)",
               .categories = bins.labels,
               .log_y = true,
               .width = 900,
               .height = 280};
    for (size_t i = 0; i < runs.size(); ++i) {
      BarGroup g{.name = runs[i].label, .color = RunColor(i)};
      for (int64_t n : summaries[i].second.reaction_bins)
        g.values.push_back(static_cast<double>(n));
      c.groups.push_back(std::move(g));
    }
    out += RenderBarChart(c);
  }

  // Recorded VMs.
  out += "\n<h2>VMs</h2>\n<p class=\"note\">Demand against what the VM had, at every step";
  if (runs.size() > 1) out += " (the other runs dashed)";
  out += ".</p>\n";
  for (const VmSeries& s : first->vm_series) {
    const VmResult& v = first->vms[s.vm];
    std::vector<double> hours;
    for (absl::Duration t : s.time) hours.push_back(Hours(t));
    absl::StrAppend(&out, "<div class=\"row\">");
    for (int memory = 0; memory < 2; ++memory) {
      LineChart c{.title = absl::StrCat(v.name, " (", v.workload, "): ", memory ? "memory" : "CPU"),
                  .x_label = "hours",
                  .y_label = memory ? "GiB" : "cores",
                  .width = 620,
                  .height = 220};
      std::vector<double> demand;
      for (const Demand& d : s.demand) {
        demand.push_back(memory ? Gib(d.memory_bytes) : d.milli_cpu / 1000.0);
      }
      c.series.push_back(
          {.name = "demand", .color = kDemandColor, .x = hours, .y = demand, .width = 1});
      for (size_t i = 0; i < runs.size(); ++i) {
        const VmSeries* other = i == 0 ? &s : FindSeries(*runs[i].results, s.vm);
        if (other == nullptr) continue;
        std::vector<double> x, y;
        for (size_t k = 0; k < other->time.size(); ++k) {
          x.push_back(Hours(other->time[k]));
          y.push_back(memory ? Gib(other->allocated[k].memory_bytes)
                             : other->allocated[k].milli_cpu / 1000.0);
        }
        c.series.push_back(
            {.name = runs.size() > 1 ? "allocated (" + runs[i].label + ")" : "allocated",
             .color = RunColor(i),
             .x = x,
             .y = y,
             .dashed = i > 0,
             .step = true});
      }
      out += RenderLineChart(c);
    }
    // The goal's parts for the first run, against what each run's VM had.
    {
      LineChart c{.title = absl::StrCat(v.name, ": goal and its parts"),
                  .x_label = "hours",
                  .y_label = "compute units",
                  .width = 620,
                  .height = 220};
      auto finite = [](const std::vector<double>& y) {
        return std::any_of(y.begin(), y.end(), [](double x) { return std::isfinite(x); });
      };
      const struct {
        const char* name;
        const std::vector<double>& y;
        const char* color;
      } parts[] = {{"CPU part", s.cpu_cu, "#8c564b"},
                   {"memory part", s.memory_cu, "#9467bd"},
                   {"LFC part", s.lfc_cu, "#17becf"},
                   {"goal", s.goal_cu, kDemandColor}};
      for (const auto& part : parts) {
        if (part.y.size() == hours.size() && finite(part.y)) {
          c.series.push_back(
              {.name = part.name, .color = part.color, .x = hours, .y = part.y, .width = 1});
        }
      }
      for (size_t i = 0; i < runs.size(); ++i) {
        const VmSeries* other = i == 0 ? &s : FindSeries(*runs[i].results, s.vm);
        if (other == nullptr) continue;
        std::vector<double> x, y;
        for (size_t k = 0; k < other->time.size(); ++k) {
          x.push_back(Hours(other->time[k]));
          y.push_back(LargerShare(other->allocated[k], runs[i].results->compute_unit));
        }
        c.series.push_back(
            {.name = runs.size() > 1 ? "allocated (" + runs[i].label + ")" : "allocated",
             .color = RunColor(i),
             .x = x,
             .y = y,
             .dashed = i > 0,
             .step = true});
      }
      out += RenderLineChart(c);
    }
    out += "</div>\n";
  }

  // The VMs that waited longest.
  out += "\n<h2>Most under-provisioned VMs</h2>\n";
  {
    std::vector<const VmResult*> sorted;
    for (const VmResult& v : first->vms) sorted.push_back(&v);
    std::stable_sort(sorted.begin(), sorted.end(), [](const VmResult* a, const VmResult* b) {
      return a->under_provisioned > b->under_provisioned;
    });
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < sorted.size() && i < 10; ++i) {
      const VmResult& v = *sorted[i];
      if (v.under_provisioned <= absl::ZeroDuration()) break;
      rows.push_back({v.name, v.workload, Short(v.under_provisioned), Short(v.cpu_short),
                      Short(v.memory_short), absl::StrCat(v.partial_grants + v.denials),
                      absl::StrCat(v.migrations)});
    }
    if (rows.empty()) {
      out += "<p>None.</p>";
    } else {
      out += Table({"VM", "workload", "under-provisioned", "CPU short", "memory short",
                    "partial grants + denials", "migrations"},
                   rows);
    }
  }

  const monitor::MonitorOptions& m = first->monitor;
  absl::StrAppend(
      &out, R"html(
<h2>Definitions</h2>
<dl>
<dt>CU-hours</dt><dd>A VM with c compute units of CPU and m of memory counts as max(c, m) CU.
Demand CU-hours count what the workload asked for in the same way.</dd>
<dt>Static peak</dt><dd>Every VM sized for the whole run at the smallest whole-CU size within
its bounds that covers its peak demand: what static provisioning would need at the least.</dd>
<dt>Under-provisioned</dt><dd>Time during which a VM's CPU or memory demand exceeded what it
had. A memory shortfall is a VM whose memory demand rose above its memory (a guest would swap
or run out of memory).</dd>
<dt>Memory pressure event</dt><dd>An upscale request from the VM's monitor: memory passed
)html",
      HtmlEscape(absl::StrFormat(
          "%g of (memory - %g MiB)", m.threshold_fraction,
          static_cast<double>(m.kernel_overhead_bytes + m.system_reserve_bytes) / kMiB)),
      R"html(.</dd>
<dt>Partial grant, denial</dt><dd>The ledger granted only part of a requested growth, or none
of it, because the node was full.</dd>
<dt>Reaction time</dt><dd>From the moment the core wanted more than the VM had to the moment
the VM had it.</dd>
</dl>
</body></html>
)html");
  return out;
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) {
    return absl::UnavailableError(absl::StrCat("writing ", path, ": ", std::strerror(errno)));
  }
  f << text;
  f.close();
  if (!f) {
    return absl::UnavailableError(absl::StrCat("writing ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace autoscale::sim
