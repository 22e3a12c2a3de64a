#include "autoscale/sim/trace.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "autoscale/base/units.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::sim {
namespace {

using ::testing::HasSubstr;

TEST(TraceTest, ParsesSamplesInAnyColumnOrder) {
  absl::StatusOr<Trace> t = ParseTraceCsv(
      "# exported from a fleet\r\n"
      "vm,extra,memory_mib,time_s,cpu_cores\r\n"
      "db-1,x,1850,1000,0.42\r\n"
      "db-2,y,600,1000,0.05\r\n"
      "\r\n"
      "db-1,z,2210.5,1300,1.37\r\n",
      "t.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->vms.size(), 2u);
  EXPECT_EQ(t->vms[0].name, "db-1");
  ASSERT_EQ(t->vms[0].samples.size(), 2u);
  EXPECT_EQ(t->vms[0].samples[0].time, absl::ZeroDuration()) << "from the earliest time";
  EXPECT_EQ(t->vms[0].samples[0].demand, (Demand{420, 1850 * kMiB}));
  EXPECT_EQ(t->vms[0].samples[1].time, absl::Seconds(300));
  EXPECT_EQ(t->vms[0].samples[1].demand, (Demand{1370, 2210 * kMiB + kMiB / 2}));
  EXPECT_EQ(t->vms[1].samples[0].demand, (Demand{50, 600 * kMiB}));
  EXPECT_EQ(t->end, absl::Seconds(300));
}

TEST(TraceTest, ReadsTheOptionalLfcWorkingSetColumn) {
  absl::StatusOr<Trace> t = ParseTraceCsv(
      "time_s,vm,cpu_cores,memory_mib,lfc_working_set_mib\n0,a,1,100,2048\n60,a,1,100,512.5\n",
      "t.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->vms[0].samples[0].demand.lfc_working_set_bytes, 2 * kGiB);
  EXPECT_EQ(t->vms[0].samples[1].demand.lfc_working_set_bytes, 512 * kMiB + kMiB / 2);
  EXPECT_THAT(
      ParseTraceCsv("time_s,vm,cpu_cores,memory_mib,lfc_working_set_mib\n0,a,1,100,-1\n", "t.csv")
          .status()
          .message(),
      HasSubstr("t.csv:2: lfc_working_set_mib: -1 is negative"));
}

TEST(TraceTest, FromColumnsAsFromCsv) {
  const std::vector<double> time = {600, 0, 300, 0};
  const std::vector<std::string> vm = {"a", "a", "a", "b"};
  const std::vector<double> cpu = {3, 1, 2, 0.5}, mem = {300, 100, 200, 50}, lfc = {1, 2, 3, 4};
  absl::StatusOr<Trace> t = TraceFromColumns(time, vm, cpu, mem, lfc, "arrays");
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<Trace> csv = ParseTraceCsv(
      "time_s,vm,cpu_cores,memory_mib,lfc_working_set_mib\n600,a,3,300,1\n0,a,1,100,2\n300,a,2,"
      "200,3\n0,b,0.5,50,4\n",
      "t.csv");
  ASSERT_TRUE(csv.ok()) << csv.status();
  ASSERT_EQ(t->vms.size(), csv->vms.size());
  for (size_t v = 0; v < t->vms.size(); ++v) {
    EXPECT_EQ(t->vms[v].name, csv->vms[v].name);
    ASSERT_EQ(t->vms[v].samples.size(), csv->vms[v].samples.size());
    for (size_t i = 0; i < t->vms[v].samples.size(); ++i) {
      EXPECT_EQ(t->vms[v].samples[i].time, csv->vms[v].samples[i].time);
      EXPECT_EQ(t->vms[v].samples[i].demand, csv->vms[v].samples[i].demand);
    }
  }
  EXPECT_EQ(t->end, absl::Seconds(600));
  // Without the LFC column; and the errors name the row.
  EXPECT_TRUE(TraceFromColumns(time, vm, cpu, mem, {}, "arrays").ok());
  const std::vector<double> bad_cpu = {3, 1, -2, 0.5};
  EXPECT_EQ(TraceFromColumns(time, vm, bad_cpu, mem, {}, "arrays").status().message(),
            "arrays:3: cpu_cores: -2 is negative");
  const std::vector<double> nan_mem = {300, NAN, 200, 50};
  EXPECT_EQ(TraceFromColumns(time, vm, cpu, nan_mem, {}, "arrays").status().message(),
            "arrays:2: memory_mib: 'nan' is not a number");
  EXPECT_THAT(
      TraceFromColumns(time, vm, cpu, std::vector<double>{1}, {}, "arrays").status().message(),
      HasSubstr("the columns differ in length"));
  EXPECT_THAT(TraceFromColumns({}, {}, {}, {}, {}, "arrays").status().message(),
              HasSubstr("arrays: no samples"));
}

TEST(TraceTest, SortsEachVmsSamplesByTime) {
  absl::StatusOr<Trace> t = ParseTraceCsv(
      "time_s,vm,cpu_cores,memory_mib\n600,a,3,300\n0,a,1,100\n300,a,2,200\n", "t.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->vms[0].samples.size(), 3u);
  EXPECT_EQ(t->vms[0].samples[0].demand.milli_cpu, 1000);
  EXPECT_EQ(t->vms[0].samples[2].demand.milli_cpu, 3000);
}

TEST(TraceTest, DemandHoldsUntilTheNextSample) {
  auto trace = std::make_shared<const Trace>(*ParseTraceCsv(
      "time_s,vm,cpu_cores,memory_mib\n100,a,1,100\n400,a,2,200\n700,a,3,300\n", "t.csv"));
  std::unique_ptr<Workload> w = NewTraceWorkload(trace, 0);
  EXPECT_EQ(w->kind(), "trace");
  EXPECT_EQ(w->At(absl::ZeroDuration()).milli_cpu, 1000);
  EXPECT_EQ(w->At(absl::Seconds(299)).milli_cpu, 1000);
  EXPECT_EQ(w->At(absl::Seconds(300)).milli_cpu, 2000);
  EXPECT_EQ(w->At(absl::Seconds(599)).milli_cpu, 2000);
  EXPECT_EQ(w->At(absl::Seconds(600)).milli_cpu, 3000);
  EXPECT_EQ(w->At(absl::Hours(5)).memory_bytes, 300 * kMiB) << "the last sample holds";
}

struct BadCase {
  const char* name;
  const char* text;
  const char* error;
};

class BadTraceTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadTraceTest, ErrorNamesTheLine) {
  absl::StatusOr<Trace> t = ParseTraceCsv(GetParam().text, "fleet.csv");
  ASSERT_FALSE(t.ok()) << GetParam().name;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr(GetParam().error)) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, BadTraceTest,
    ::testing::Values(
        BadCase{"not a number", "time_s,vm,cpu_cores,memory_mib\n0,a,1,100\n5,a,abc,100\n",
                "fleet.csv:3: cpu_cores: 'abc' is not a number"},
        BadCase{"too few fields", "time_s,vm,cpu_cores,memory_mib\n0,a,1,100\n5,a,1\n",
                "fleet.csv:3: expected 4 fields as in the header, got 3"},
        BadCase{"too many fields", "time_s,vm,cpu_cores,memory_mib\n0,a,1,100,7\n",
                "fleet.csv:2: expected 4 fields"},
        BadCase{"negative", "time_s,vm,cpu_cores,memory_mib\n\n# c\n0,a,1,-100\n",
                "fleet.csv:4: memory_mib: -100 is negative"},
        BadCase{"infinite", "time_s,vm,cpu_cores,memory_mib\n0,a,inf,100\n",
                "fleet.csv:2: cpu_cores: 'inf' is not a number"},
        BadCase{"nan", "time_s,vm,cpu_cores,memory_mib\nnan,a,1,100\n",
                "fleet.csv:2: time_s: 'nan' is not a number"},
        BadCase{"huge", "time_s,vm,cpu_cores,memory_mib\n0,a,1,1e300\n",
                "fleet.csv:2: memory_mib: 1e300 is too large"},
        // A PiB of memory and a million cores are the limits (sums of them stay far from
        // overflow).
        BadCase{"above a PiB", "time_s,vm,cpu_cores,memory_mib\n0,a,1,1073741825\n",
                "fleet.csv:2: memory_mib: 1073741825 is too large (at most 1073741824)"},
        BadCase{"above a million cores", "time_s,vm,cpu_cores,memory_mib\n0,a,1000000.5,1\n",
                "fleet.csv:2: cpu_cores: 1000000.5 is too large (at most 1000000)"},
        BadCase{"empty name", "time_s,vm,cpu_cores,memory_mib\n0,,1,100\n",
                "fleet.csv:2: vm: empty name"},
        BadCase{"missing column", "time_s,vm,cpu,memory_mib\n0,a,1,100\n",
                "fleet.csv:1: the header lacks column 'cpu_cores'"},
        BadCase{"column twice", "time_s,vm,vm,cpu_cores,memory_mib\n",
                "fleet.csv:1: vm: column named twice"},
        BadCase{"same time twice",
                "time_s,vm,cpu_cores,memory_mib\n0,a,1,100\n0,b,1,1\n0,a,2,100\n",
                "fleet.csv:4: time_s: VM 'a' has another sample at 0 s (line 2)"},
        BadCase{"empty file", "", "fleet.csv: empty trace (no header line)"},
        BadCase{"header only", "time_s,vm,cpu_cores,memory_mib\n", "fleet.csv: no samples"}),
    [](const ::testing::TestParamInfo<BadCase>& info) {
      std::string n = info.param.name;
      for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return n;
    });

TEST(TraceTest, TakesTheLimitsThemselves) {
  absl::StatusOr<Trace> t =
      ParseTraceCsv("time_s,vm,cpu_cores,memory_mib\n0,a,1000000,1073741824\n", "max.csv");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->vms[0].samples[0].demand, (Demand{kMaxMilliCpu, kMaxMemoryBytes}));
}

TEST(TraceDeathTest, AWorkloadOfAVmNotInTheTraceIsAProgrammerError) {
  auto trace = std::make_shared<const Trace>(
      *ParseTraceCsv("time_s,vm,cpu_cores,memory_mib\n0,a,1,100\n", "one.csv"));
  EXPECT_NE(NewTraceWorkload(trace, 0), nullptr);
  EXPECT_DEATH(NewTraceWorkload(trace, 1), "no VM 1 in a trace of 1");
}

TEST(TraceTest, ReadsFilesAndNamesAMissingOne) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/trace.csv";
  {
    std::ofstream f(path);
    f << "time_s,vm,cpu_cores,memory_mib\n0,a,1,100\nx,a,1,100\n";
  }
  EXPECT_THAT(ReadTraceCsv(path).status().message(), HasSubstr(path + ":3: time_s"));
  EXPECT_THAT(ReadTraceCsv(path + ".missing").status().message(), HasSubstr("trace.csv.missing"));
}

}  // namespace
}  // namespace autoscale::sim
