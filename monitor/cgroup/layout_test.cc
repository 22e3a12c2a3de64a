#include "monitor/cgroup/layout.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "monitor/cgroup/watchers.h"

namespace autoscale::monitor::cgroup {
namespace {

using ::testing::HasSubstr;

std::string Write(const std::string& name, const std::string& content) {
  std::string path = std::string(getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << content;
  return path;
}

TEST(DetectLayout, Hybrid) {
  std::string mi =
      Write("mountinfo_hybrid", R"(30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
)");
  auto l = DetectLayout(mi);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->v1_memory, "/sys/fs/cgroup/memory");
  EXPECT_EQ(l->v2, "/sys/fs/cgroup/unified");
  EXPECT_EQ(l->Describe(), "hybrid");
  EXPECT_EQ(l->memory_version(), Version::kV1);
}

TEST(DetectLayout, V2Only) {
  std::string mi =
      Write("mountinfo_v2", "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
  auto l = DetectLayout(mi);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->Describe(), "v2");
  EXPECT_TRUE(l->v1_memory.empty());
}

TEST(DetectLayout, MalformedLineNamesFileAndLine) {
  std::string mi = Write("mountinfo_bad", "1 2 3 / /x rw - tmpfs\nbroken\n");
  auto l = DetectLayout(mi);
  ASSERT_FALSE(l.ok());
  EXPECT_THAT(std::string(l.status().message()), HasSubstr("mountinfo_bad:2"));
  EXPECT_EQ(DetectLayout("/nonexistent/mountinfo").status().code(), absl::StatusCode::kNotFound);
}

TEST(OwnCgroup, FindsControllerAndV2) {
  std::string pc =
      Write("proc_cgroup", "4:memory:/process_api/abc\n3:cpu,cpuacct:/x\n0::/v2path\n");
  EXPECT_EQ(*OwnCgroup("memory", pc), "/process_api/abc");
  EXPECT_EQ(*OwnCgroup("cpuacct", pc), "/x");
  EXPECT_EQ(*OwnCgroup("", pc), "/v2path");
  EXPECT_EQ(OwnCgroup("pids", pc).status().code(), absl::StatusCode::kNotFound);
  std::string bad = Write("proc_cgroup_bad", "garbage\n");
  EXPECT_THAT(std::string(OwnCgroup("memory", bad).status().message()), HasSubstr("malformed"));
}

// Shared memory (shmem: shared_buffers, /dev/shm) counts as anon, not as page cache.
TEST(ParseMemoryStat, V1PrefersHierarchicalRssAndCacheAndCountsShmem) {
  auto s = ParseMemoryStat(
      "cache 10\nrss 20\nshmem 5\nactive_anon 1\ninactive_anon 2\nactive_file 3\n"
      "inactive_file 4\ntotal_cache 1000\ntotal_rss 2000\ntotal_shmem 500\n"
      "total_active_anon 100\ntotal_inactive_anon 200\ntotal_active_file 300\n"
      "total_inactive_file 400\n",
      "memory.stat");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->anon_bytes, 2500);
  EXPECT_EQ(s->file_bytes, 500);
  EXPECT_EQ(s->usage_bytes, -1);
}

TEST(ParseMemoryStat, V2KeysWithShmem) {
  auto s = ParseMemoryStat("anon 5\nfile 9\nshmem 3\nactive_anon 4096\ninactive_anon 8192\n", "m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->anon_bytes, 8);
  EXPECT_EQ(s->file_bytes, 6);
}

// A kernel without the shmem key: the LRU counters, which include shmem, else rss alone.
TEST(ParseMemoryStat, WithoutShmemTheLruCountersWhichIncludeIt) {
  auto s = ParseMemoryStat("rss 20\ncache 10\nactive_anon 7\ninactive_anon 30\n", "m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->anon_bytes, 37);
  EXPECT_EQ(s->file_bytes, 10);
  s = ParseMemoryStat("rss 20\ncache 10\n", "m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->anon_bytes, 20);
}

TEST(ParseMemoryStat, FallsBackToTheLruCounters) {
  auto s = ParseMemoryStat("active_anon 4096\ninactive_anon 8192\nactive_file 1\ninactive_file 2\n",
                           "m");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->anon_bytes, 12288);
  EXPECT_EQ(s->file_bytes, 3);
}

TEST(ParseMemoryStat, MalformedIsAClearError) {
  auto bad = ParseMemoryStat("active_anon 12x\ninactive_anon 1\n", "/cg/memory.stat");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("/cg/memory.stat:1: bad value for active_anon"));
  auto missing = ParseMemoryStat("cache 1\n", "/cg/memory.stat");
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("no anon, rss"));
  EXPECT_FALSE(ParseMemoryStat("active_anon -5\ninactive_anon 1\n", "m").ok());
  EXPECT_FALSE(ParseMemoryStat("rss 1\nrss x\n", "m").ok());
  EXPECT_FALSE(ParseMemoryStat("", "m").ok());
}

TEST(ReadInt64File, ValuesMaxAndGarbage) {
  EXPECT_EQ(*ReadInt64File(Write("n", "12345\n")), 12345);
  EXPECT_EQ(*ReadInt64File(Write("max", "max\n")), INT64_MAX);
  auto bad = ReadInt64File(Write("junk", "\x01\x02zz"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("expected an integer"));
}

TEST(AcceptedPsiWindow, RoundsUpToTwoSecondsWithoutTheCapability) {
  EXPECT_EQ(AcceptedPsiWindow(absl::Seconds(1), false), absl::Seconds(2));
  EXPECT_EQ(AcceptedPsiWindow(absl::Milliseconds(2001), false), absl::Seconds(4));
  EXPECT_EQ(AcceptedPsiWindow(absl::Seconds(4), false), absl::Seconds(4));
  EXPECT_EQ(AcceptedPsiWindow(absl::Seconds(30), false), absl::Seconds(10));
  EXPECT_EQ(AcceptedPsiWindow(absl::Seconds(1), true), absl::Seconds(1));
  EXPECT_EQ(AcceptedPsiWindow(absl::Milliseconds(100), true), absl::Milliseconds(500));
}

}  // namespace
}  // namespace autoscale::monitor::cgroup
