#include "monitor/metrics.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace autoscale::monitor {
namespace {

using ::testing::HasSubstr;

std::string Proc(const std::string& name, const std::string& loadavg, const std::string& meminfo) {
  std::string dir = std::string(getenv("TEST_TMPDIR")) + "/" + name;
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/loadavg") << loadavg;
  std::ofstream(dir + "/meminfo") << meminfo;
  return dir;
}

const char kMemInfo[] =
    "MemTotal:        4000000 kB\nMemFree:  100 kB\nMemAvailable:    3000000 kB\n"
    "Buffers:  10 kB\nCached:           500000 kB\n";

TEST(ReadLfcWindowsFile, ReadsTheOperatorsWindowsAndRejectsGarbage) {
  const std::string file = std::string(getenv("TEST_TMPDIR")) + "/lfc-windows";
  std::ofstream(file, std::ios::trunc) << "10 20.5\n30\n";
  auto w = ReadLfcWindowsFile(file);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w, (std::vector<double>{10, 20.5, 30}));

  std::ofstream(file, std::ios::trunc) << "10 lots";
  absl::Status bad = ReadLfcWindowsFile(file).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("LFC window 2 is \"lots\""));
  EXPECT_THAT(std::string(bad.message()), HasSubstr(file));
  std::ofstream(file, std::ios::trunc) << "-1";
  EXPECT_FALSE(ReadLfcWindowsFile(file).ok());
  std::string many;
  for (int i = 0; i < 61; ++i) many += "1 ";
  std::ofstream(file, std::ios::trunc) << many;
  EXPECT_THAT(std::string(ReadLfcWindowsFile(file).status().message()), HasSubstr("more than 60"));
  EXPECT_FALSE(ReadLfcWindowsFile(file + "-missing").ok());
}

TEST(MetricsReader, ReadsLoadAndMemory) {
  MetricsReader reader(Proc("ok", "1.50 0.75 0.20 2/300 4000\n", kMemInfo), [] {
    return std::vector<double>{1, 2, 3};
  });
  auto m = reader.Read();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_DOUBLE_EQ(m->load_avg_1m(), 1.5);
  EXPECT_DOUBLE_EQ(m->load_avg_5m(), 0.75);
  EXPECT_EQ(m->memory_usage_bytes(), (4000000 - 3000000) * 1024LL + (100 << 20));
  EXPECT_EQ(m->memory_cached_bytes(), 500000 * 1024LL);
  EXPECT_EQ(m->lfc_working_set_pages_size(), 3);
}

TEST(MetricsReader, MalformedFilesAreClearErrors) {
  auto bad_load = MetricsReader(Proc("badload", "lots\n", kMemInfo)).Read();
  EXPECT_THAT(std::string(bad_load.status().message()), HasSubstr("loadavg: malformed"));
  auto bad_mem = MetricsReader(Proc("badmem", "1 1 1 1/1 1\n", "MemTotal: x kB\n")).Read();
  EXPECT_THAT(std::string(bad_mem.status().message()), HasSubstr("meminfo:1: bad value"));
  auto missing = MetricsReader(Proc("missing", "1 1 1 1/1 1\n", "MemTotal: 5 kB\n")).Read();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("needs MemTotal"));
  EXPECT_EQ(MetricsReader("/nonexistent").Read().status().code(), absl::StatusCode::kNotFound);
}

TEST(MetricsReader, RealProcWorks) {
  auto m = MetricsReader().Read();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->memory_usage_bytes(), 100 << 20);
}

}  // namespace
}  // namespace autoscale::monitor
