#include "autoscale/sim/report.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/units.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::sim {
namespace {

using ::testing::HasSubstr;

// Checks that `html` is well formed as XML (every element closed, in order; attributes quoted;
// entities known; void elements self-closed), skipping the doctype. Returns the element names in
// document order, or an error.
absl::StatusOr<std::vector<std::string>> Elements(const std::string& html) {
  std::vector<std::string> stack, seen;
  size_t i = 0;
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("at ", i, ": ", what, " near '", html.substr(i > 40 ? i - 40 : 0, 80), "'"));
  };
  while (i < html.size()) {
    const char c = html[i];
    if (c == '&') {
      bool known = false;
      for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"}) {
        if (html.compare(i, strlen(e), e) == 0) known = true;
      }
      if (!known) return error("bare &");
      ++i;
      continue;
    }
    if (c == '>') return error("bare >");
    if (c != '<') {
      ++i;
      continue;
    }
    if (html.compare(i, 9, "<!DOCTYPE") == 0) {
      i = html.find('>', i) + 1;
      continue;
    }
    const size_t end = html.find('>', i);
    if (end == std::string::npos) return error("unclosed tag");
    std::string tag = html.substr(i + 1, end - i - 1);
    if (!tag.empty() && tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) {
        return error(
            absl::StrCat("</", name, "> closes <", stack.empty() ? "" : stack.back(), ">"));
      }
      stack.pop_back();
    } else {
      const bool self_closing = !tag.empty() && tag.back() == '/';
      if (self_closing) tag.pop_back();
      const std::string name = tag.substr(0, tag.find_first_of(" \n"));
      if (name.empty()) return error("empty tag");
      // Attributes: name="value" pairs, values without quotes or '<'.
      size_t quotes = 0;
      for (char t : tag) quotes += t == '"';
      if (quotes % 2 != 0) return error("unbalanced quotes");
      if (tag.find('<') != std::string::npos) return error("< inside a tag");
      seen.push_back(name);
      if (!self_closing) {
        if (name == "meta" || name == "br" || name == "img" || name == "link") {
          return error("void element not self-closed");
        }
        stack.push_back(name);
      }
    }
    i = end + 1;
  }
  if (!stack.empty())
    return absl::InvalidArgumentError(absl::StrCat("<", stack.back(), "> never closed"));
  return seen;
}

// A CSV line's cells (quotes as RFC 4180).
std::vector<std::string> Cells(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

// A small run with an awkward VM name (HTML and CSV must escape it).
Results SmallRun(uint64_t seed) {
  SimConfig c;
  c.duration = absl::Minutes(40);
  c.nodes = 2;
  c.node_capacity = {6000, 24 * kGiB};
  c.series_vms = {0, 3};
  c.seed = seed;
  std::vector<SimVm> vms;
  for (auto& w : MakeWorkloads(*ParseWorkloadMix("spike,bursty,diurnal"), 8, seed)) {
    vms.push_back(
        {vms.empty() ? "db <1> & \"x\", y" : absl::StrCat("vm-", vms.size()), std::move(w)});
  }
  auto sim = Simulation::Create(c, std::move(vms));
  if (!sim.ok()) {
    ADD_FAILURE() << sim.status();
    return {};
  }
  EXPECT_TRUE((*sim)->Run().ok());
  return (*sim)->TakeResults();
}

TEST(ReportTest, HtmlIsWellFormedSelfContainedAndHasThePlots) {
  const Results a = SmallRun(1);
  const Results b = SmallRun(1);
  const std::string html =
      HtmlReport({{.label = "a.json", .settings = {{"scaling config", "a.json"}}, .results = &a},
                  {.label = "b <2>", .settings = {{"scaling config", "b.json"}}, .results = &b}});
  absl::StatusOr<std::vector<std::string>> elements = Elements(html);
  ASSERT_TRUE(elements.ok()) << elements.status();
  EXPECT_TRUE(absl::StartsWith(html, "<!DOCTYPE html>"));
  int svgs = 0, polylines = 0, rects = 0;
  for (const std::string& e : *elements) {
    svgs += e == "svg";
    polylines += e == "polyline";
    rects += e == "rect";
  }
  // Fleet CPU and memory, the goal's parts, one node chart per run, the reaction histogram, three
  // per recorded VM (CPU, memory, the goal and its parts).
  EXPECT_EQ(svgs, 2 + 1 + 2 + 1 + 3 * 2);
  EXPECT_GT(polylines, 20);
  EXPECT_GT(rects, 10);
  // Nothing fetched, nothing run.
  for (const char* bad : {"http:", "https:", "<script", " src=", "url(", "<link", "@import"}) {
    EXPECT_FALSE(absl::StrContains(html, bad)) << bad;
  }
  EXPECT_THAT(html, HasSubstr("db &lt;1&gt; &amp; &quot;x&quot;, y"));
  EXPECT_THAT(html, HasSubstr("b &lt;2&gt;"));
  EXPECT_THAT(html, HasSubstr("CU-hours allocated"));
  EXPECT_THAT(html, HasSubstr("Reaction times"));
  EXPECT_THAT(html, HasSubstr("Goal decided by"));
  EXPECT_THAT(html, HasSubstr("goal and its parts"));
}

TEST(ReportTest, ComparesAnyNumberOfRuns) {
  const Results a = SmallRun(1), b = SmallRun(2), c = SmallRun(3), d = SmallRun(4);
  const std::string html = HtmlReport({{.label = "a", .results = &a},
                                       {.label = "b", .results = &b},
                                       {.label = "c", .results = &c},
                                       {.label = "d", .results = &d}});
  ASSERT_TRUE(Elements(html).ok());
  for (const char* label : {"allocated (a)", "allocated (b)", "allocated (c)", "allocated (d)",
                            "Node reservation (d)"}) {
    EXPECT_THAT(html, HasSubstr(label));
  }
}

TEST(ReportTest, SummaryJsonHasEveryRunAndItsFigures) {
  const Results a = SmallRun(1);
  Summary s = Summarize(a);
  const std::string json = SummaryJson({{"a \"quoted\"", s}, {"b", s}});
  EXPECT_TRUE(absl::StartsWith(json, "{\"runs\": [")) << json;
  EXPECT_THAT(json, HasSubstr("\"label\": \"a \\\"quoted\\\"\""));
  EXPECT_THAT(json, HasSubstr(absl::StrCat("\"vms\": ", a.vms.size())));
  EXPECT_THAT(json, HasSubstr(absl::StrCat("\"vm_steps\": ", s.vm_steps)));
  EXPECT_THAT(json, HasSubstr("\"reaction_bins\": {\"<0.1s\": "));
  // Balanced, and one object per run.
  int depth = 0, objects = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char ch = json[i];
    if (in_string) {
      if (ch == '\\') ++i;
      if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    if (ch == '{' || ch == '[') {
      objects += depth == 2 && ch == '{';  // inside {"runs": [
      ++depth;
    }
    if (ch == '}' || ch == ']') --depth;
    ASSERT_GE(depth, 0);
  }
  EXPECT_EQ(depth, 0);
  EXPECT_EQ(objects, 2);
}

TEST(ReportTest, SeriesCsvHasTheFleetThenEveryNodeAndAddsUp) {
  const Results r = SmallRun(5);
  std::vector<std::string> lines = absl::StrSplit(SeriesCsv(r), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1 + r.node_series.size() * (1 + r.node_names.size()));
  const std::vector<std::string> header = Cells(lines[0]);
  ASSERT_EQ(header.size(), 12u);
  size_t line = 1;
  for (const NodeSample& sample : r.node_series) {
    std::vector<double> fleet(header.size(), 0), sum(header.size(), 0);
    for (size_t n = 0; n <= r.node_names.size(); ++n, ++line) {
      const std::vector<std::string> cells = Cells(lines[line]);
      ASSERT_EQ(cells.size(), header.size());
      EXPECT_EQ(cells[1], n == 0 ? "fleet" : r.node_names[n - 1]);
      std::vector<double> v(header.size(), 0);
      for (size_t c = 2; c < cells.size(); ++c) ASSERT_TRUE(absl::SimpleAtod(cells[c], &v[c]));
      if (n == 0) {
        fleet = v;
      } else {
        for (size_t c = 2; c < v.size(); ++c) sum[c] += v[c];
        EXPECT_EQ(v[2], static_cast<double>(sample.reserved[n - 1].milli_cpu));
      }
      // What was used and what was lacking make up the demand.
      EXPECT_EQ(v[8] + v[10], v[6]) << lines[line];
      EXPECT_EQ(v[9] + v[11], v[7]) << lines[line];
      EXPECT_LE(v[8], v[4]) << "used at most what the VMs had";
    }
    for (size_t c = 2; c < header.size(); ++c) EXPECT_EQ(fleet[c], sum[c]) << header[c];
  }
}

TEST(ReportTest, HtmlWithoutRecordedVmsOrRunsIsStillWellFormed) {
  Results r = SmallRun(2);
  r.vm_series.clear();
  EXPECT_TRUE(Elements(HtmlReport({{.label = "only", .results = &r}})).ok());
  EXPECT_TRUE(Elements(HtmlReport({})).ok());
}

TEST(ReportTest, CsvHasOneRowPerVmAndParses) {
  const Results r = SmallRun(3);
  const std::string csv = VmCsv(r);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1 + r.vms.size());
  const std::vector<std::string> header = Cells(lines[0]);
  EXPECT_EQ(header[0], "vm");
  EXPECT_EQ(header.back(), "reactions_abandoned");
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> cells = Cells(lines[i]);
    ASSERT_EQ(cells.size(), header.size()) << lines[i];
    EXPECT_EQ(cells[0], r.vms[i - 1].name);
    for (size_t c = 3; c < cells.size(); ++c) {
      double v;
      EXPECT_TRUE(absl::SimpleAtod(cells[c], &v)) << header[c] << " = '" << cells[c] << "'";
    }
  }
  EXPECT_EQ(Cells(lines[1])[0], "db <1> & \"x\", y") << "quoted, with its comma and quotes";
}

TEST(ReportTest, CsvRowHasTheFiguresComputedByHand) {
  Results r;
  r.duration = absl::Hours(2);
  r.compute_unit = {250, kGiB};
  r.bounds = {1, 8};
  VmResult v;
  v.name = "a";
  v.workload = "w";
  v.node = "n";
  v.initial = {500, 3 * kGiB};
  v.final_size = {250, kGiB};
  v.peak_size = {1000, 4 * kGiB};
  v.static_peak_cu = 4;
  v.peak_demand = {1500, 3 * kGiB};
  v.cu_hours_allocated = 6;
  v.under_provisioned = absl::Minutes(30);
  v.cpu_short = absl::Minutes(20);
  v.memory_short = absl::Minutes(10);
  v.reaction_times = {absl::Milliseconds(100), absl::Milliseconds(300)};
  v.partial_grants = 2;
  r.vms = {v};
  std::vector<std::string> lines = absl::StrSplit(VmCsv(r), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  const std::vector<std::string> header = Cells(lines[0]), row = Cells(lines[1]);
  ASSERT_EQ(row.size(), header.size());
  std::map<std::string, std::string> cell;
  for (size_t i = 0; i < header.size(); ++i) cell[header[i]] = row[i];
  EXPECT_EQ(cell["initial_cu"], "3") << "max(500 / 250, 3 GiB / 1 GiB)";
  EXPECT_EQ(cell["final_cu"], "1");
  EXPECT_EQ(cell["peak_cu"], "4");
  EXPECT_EQ(cell["static_peak_cu"], "4");
  EXPECT_EQ(cell["peak_demand_cpu_cores"], "1.5");
  EXPECT_EQ(cell["peak_demand_memory_gib"], "3");
  EXPECT_EQ(cell["cu_hours_allocated"], "6");
  EXPECT_EQ(cell["cu_hours_static_peak"], "8") << "4 CU for 2 hours";
  EXPECT_EQ(cell["under_provisioned_s"], "1800.000");
  EXPECT_EQ(cell["under_provisioned_share"], "0.25") << "30 min of 2 h";
  EXPECT_EQ(cell["cpu_short_s"], "1200.000");
  EXPECT_EQ(cell["memory_short_s"], "600.000");
  EXPECT_EQ(cell["partial_grants"], "2");
  EXPECT_EQ(cell["reactions"], "2");
  EXPECT_EQ(cell["reaction_mean_s"], "0.200");
  EXPECT_EQ(cell["reaction_max_s"], "0.300");
}

TEST(ReportTest, SummarizesByHand) {
  Results r;
  r.duration = absl::Hours(2);
  r.compute_unit = {250, kGiB};
  r.bounds = {1, 8};
  r.node_names = {"n0", "n1"};
  r.node_totals = {{4000, 16 * kGiB}, {4000, 16 * kGiB}};
  r.node_series = {{.time = absl::ZeroDuration(),
                    .reserved = {{2000, 4 * kGiB}, {1000, 12 * kGiB}},
                    .allocated = {{}, {}},
                    .demand = {{}, {}}}};
  VmResult a, b;
  a.cu_hours_allocated = 6;
  a.cu_hours_demand = 3;
  a.static_peak_cu = 4;
  a.under_provisioned = absl::Minutes(30);
  a.reaction_times = {absl::Milliseconds(100), absl::Milliseconds(300)};
  a.partial_grants = 2;
  b.cu_hours_allocated = 2;
  b.static_peak_cu = 1;
  b.reaction_times = {absl::Milliseconds(200), absl::Seconds(10)};
  b.denials = 1;
  b.migrations = 3;
  r.vms = {a, b};
  const Summary s = Summarize(r);
  EXPECT_DOUBLE_EQ(s.cu_hours_allocated, 8);
  EXPECT_DOUBLE_EQ(s.cu_hours_demand, 3);
  EXPECT_DOUBLE_EQ(s.cu_hours_static_peak, (4 + 1) * 2);
  EXPECT_DOUBLE_EQ(s.cu_hours_max_bound, 8 * 2 * 2);
  EXPECT_EQ(s.vm_time, absl::Hours(4));
  EXPECT_EQ(s.under_provisioned, absl::Minutes(30));
  EXPECT_EQ(s.vms_ever_under, 1u);
  EXPECT_EQ(s.partial_grants, 2);
  EXPECT_EQ(s.denials, 1);
  EXPECT_EQ(s.migrations, 3);
  EXPECT_EQ(s.reactions, 4);
  EXPECT_EQ(s.reaction_p50, absl::Milliseconds(200));
  EXPECT_EQ(s.reaction_p90, absl::Seconds(10));
  EXPECT_EQ(s.reaction_max, absl::Seconds(10));
  EXPECT_EQ(s.reaction_mean, absl::Milliseconds(2650));
  // Node 0: max(0.5, 0.25); node 1: max(0.25, 0.75).
  EXPECT_DOUBLE_EQ(s.node_reserved_mean, (0.5 + 0.75) / 2);
  EXPECT_DOUBLE_EQ(s.node_reserved_peak, 0.75);

  const std::string text = FormatSummaries({{"run", s}});
  EXPECT_THAT(text, HasSubstr("CU-hours allocated"));
  EXPECT_THAT(text, HasSubstr("8.0 (80.00% of static peak)"));
  EXPECT_THAT(text, HasSubstr("30.0 min (12.50% of VM-time)"));
  // Each row's cells, exactly.
  std::map<std::string, std::string> row;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const size_t gap = line.find("  ");
    if (gap == absl::string_view::npos) continue;
    row[std::string(line.substr(0, gap))] =
        std::string(absl::StripLeadingAsciiWhitespace(line.substr(gap)));
  }
  EXPECT_EQ(row["VMs / nodes"], "2 / 2");
  EXPECT_EQ(row["growth: full grants / partial grants / denials"], "0 / 2 / 1");
  EXPECT_EQ(row["migrations: done / failed (VM-time migrating)"], "3 / 0 (0 ms)");
  EXPECT_EQ(row["reaction time: mean / p50 / p90 / p99 / max"],
            "2.6 s / 200 ms / 10.0 s / 10.0 s / 10.0 s");
  EXPECT_EQ(s.reaction_bins, (std::vector<int64_t>{0, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0}))
      << "0.1 s in 0.1-0.2 s; 0.2 s and 0.3 s in 0.2-0.5 s; 10 s in 10-30 s";
}

TEST(ReportTest, BinsReactionTimes) {
  const ReactionBins& bins = DefaultReactionBins();
  ASSERT_EQ(bins.upper.size(), bins.labels.size());
  const std::vector<int64_t> n = bins.Count(
      {absl::Milliseconds(50), absl::Milliseconds(100), absl::Seconds(3), absl::Hours(1)});
  EXPECT_EQ(n.front(), 1) << "< 0.1 s";
  EXPECT_EQ(n[1], 1) << "0.1 s falls in 0.1-0.2 s";
  EXPECT_EQ(n[5], 1) << "2-5 s";
  EXPECT_EQ(n.back(), 1) << "> 5 min";
}

TEST(ReportTest, WritesFilesAndNamesTheOneItCannot) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/out.csv";
  ASSERT_TRUE(WriteTextFile(path, "a,b\n").ok());
  EXPECT_EQ(*ReadFile(path), "a,b\n");
  EXPECT_THAT(WriteTextFile("/nonexistent-dir/x.html", "x").message(),
              HasSubstr("/nonexistent-dir/x.html"));
}

}  // namespace
}  // namespace autoscale::sim
