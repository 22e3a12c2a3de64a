#include "monitor/cgroup/watchers.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/units.h"
#include "autoscale/testing/cgroup.h"
#include "gtest/gtest.h"
#include "monitor/cgroup/layout.h"

namespace autoscale::monitor::cgroup {
namespace {

using ::autoscale::testing::TestCgroup;

// Collects events from the loop thread.
class Events {
 public:
  MemoryEventCallback Callback() {
    return [this](const MemoryEvent& e) {
      absl::MutexLock lock(&mu_);
      events_.push_back(e);
    };
  }
  // Runs `loop` until an event of `kind` arrived or `timeout` passed.
  std::optional<MemoryEvent> Await(EventLoop& loop, MemoryEvent::Kind kind,
                                   absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      EXPECT_TRUE(loop.RunOnce(absl::Milliseconds(50)).ok());
      absl::MutexLock lock(&mu_);
      for (const MemoryEvent& e : events_) {
        if (e.kind == kind) return e;
      }
    }
    return std::nullopt;
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<MemoryEvent> events_ ABSL_GUARDED_BY(mu_);
};

TEST(V1ThresholdWatcher, FiresWhenAChildAllocatesPastTheThreshold) {
  AUTOSCALE_REQUIRE_CGROUP_V1();
  auto cg = TestCgroup::Create("v1watch");
  ASSERT_TRUE(cg.ok()) << cg.status();
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok()) << loop.status();
  Events events;
  auto watcher = NewV1ThresholdWatcher(**loop, (*cg)->dir(), events.Callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  const int64_t threshold = 48 * kMiB;
  ASSERT_TRUE((*watcher)->SetThreshold(threshold).ok());

  ASSERT_TRUE((*cg)->Allocate(16 * kMiB).ok());
  EXPECT_FALSE(events.Await(**loop, MemoryEvent::Kind::kUsageAbove, absl::Milliseconds(200)))
      << "16 MiB is below the threshold";
  ASSERT_TRUE((*cg)->Allocate(48 * kMiB).ok());
  auto above = events.Await(**loop, MemoryEvent::Kind::kUsageAbove, absl::Seconds(5));
  ASSERT_TRUE(above.has_value()) << "no event after crossing " << threshold;
  EXPECT_GE(above->usage_bytes, threshold - kMiB) << "usage is read at the event";

  // Going back down is reported too.
  ASSERT_TRUE((*cg)->FreeAll().ok());
  auto below = events.Await(**loop, MemoryEvent::Kind::kUsageBelow, absl::Seconds(5));
  ASSERT_TRUE(below.has_value());
  EXPECT_LT(below->usage_bytes, threshold);

  // Moving the threshold re-arms at the new level.
  ASSERT_TRUE((*watcher)->SetThreshold(24 * kMiB).ok());
  size_t before = events.size();
  ASSERT_TRUE((*cg)->Allocate(32 * kMiB).ok());
  ASSERT_TRUE(events.Await(**loop, MemoryEvent::Kind::kUsageAbove, absl::Seconds(5)));
  EXPECT_GT(events.size(), before);
}

TEST(V1ThresholdWatcher, VanishedCgroupIsAnErrorNotACrash) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Events events;
  auto missing =
      NewV1ThresholdWatcher(**loop, "/sys/fs/cgroup/memory/no-such-group", events.Callback());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("no-such-group"), std::string::npos);

  AUTOSCALE_REQUIRE_CGROUP_V1();
  auto cg = TestCgroup::Create("vanish");
  ASSERT_TRUE(cg.ok()) << cg.status();
  auto watcher = NewV1ThresholdWatcher(**loop, (*cg)->dir(), events.Callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE((*watcher)->SetThreshold(64 * kMiB).ok());
  std::string dir = (*cg)->dir();
  cg->reset();  // kills the child and removes the group under the watcher
  ASSERT_TRUE((*loop)->RunOnce(absl::Milliseconds(100)).ok());
  absl::Status s = (*watcher)->SetThreshold(32 * kMiB);
  EXPECT_FALSE(s.ok()) << "re-arming on a removed group must fail";
}

// cgroup2 here has no memory controller, so the v2 watcher runs on a directory fixture with the
// same files; inotify sees the test's writes as the kernel's file-modified events.
class V2Fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(getenv("TEST_TMPDIR"), "/v2-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    mkdir(dir_.c_str(), 0755);
    Put("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
    Put("memory.current", "1000\n");
    Put("memory.high", "max\n");
  }
  void Put(const std::string& name, const std::string& content) {
    std::ofstream(dir_ + "/" + name, std::ios::trunc) << content;
  }
  std::string Get(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string dir_;
};

TEST_F(V2Fixture, HighEventsAreReportedOncePerRise) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Events events;
  auto watcher = NewV2HighWatcher(**loop, dir_, events.Callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_TRUE((*watcher)->SetThreshold(512 * kMiB).ok());
  // Never lowered to the threshold, where the kernel would throttle the group.
  EXPECT_EQ(Get("memory.high"), "max\n");
  Put("memory.high", "900000000\n");  // the operator's own
  ASSERT_TRUE((*watcher)->SetThreshold(256 * kMiB).ok());
  EXPECT_EQ(Get("memory.high"), "900000000\n");

  Put("memory.current", "600000000\n");
  Put("memory.events", "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\n");
  auto e = events.Await(**loop, MemoryEvent::Kind::kHigh, absl::Seconds(2));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->usage_bytes, 600000000);
  // A modification that does not raise the counter is not an event.
  size_t n = events.size();
  Put("memory.events", "low 1\nhigh 3\nmax 0\noom 0\noom_kill 0\n");
  ASSERT_TRUE((*loop)->RunOnce(absl::Milliseconds(100)).ok());
  EXPECT_EQ(events.size(), n);
}

// Monitor 0.1.0 set memory.high to its threshold and a crashed one left it: the next monitor
// finds something other than what the operator declared and puts the operator's value back.
TEST_F(V2Fixture, AMemoryHighLeftBehindIsRepairedToTheOperatorsValue) {
  Put("memory.high", "943718400\n");  // 0.85 * 1 GiB + overhead, as 0.1.0 left it
  absl::StatusOr<std::optional<std::string>> found = RepairMemoryHigh(dir_, "max");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->value_or("nothing"), "943718400");
  EXPECT_EQ(Get("memory.high"), "max");
  // Already right: nothing is written (a write would move the file's old modification time).
  const std::string file = dir_ + "/memory.high";
  const struct timeval old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(utimes(file.c_str(), old), 0);
  found = RepairMemoryHigh(dir_, "max");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mtime, 1000);

  // An operator's size: compared as the kernel reads it back (whole pages).
  const int64_t page = sysconf(_SC_PAGESIZE);
  Put("memory.high", absl::StrCat(2 * page, "\n"));
  found = RepairMemoryHigh(dir_, absl::StrCat(2 * page + 100));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  found = RepairMemoryHigh(dir_, absl::StrCat(8 * page));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->value_or("nothing"), absl::StrCat(2 * page));
  EXPECT_EQ(Get("memory.high"), absl::StrCat(8 * page));

  // "keep": the operator manages it; nothing is read or written.
  Put("memory.high", "12345\n");
  found = RepairMemoryHigh(dir_, "keep");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_FALSE(found->has_value());
  EXPECT_EQ(Get("memory.high"), "12345\n");
}

TEST_F(V2Fixture, BadMemoryHighSettingsAndFilesAreErrors) {
  for (const char* bad : {"", "0", "-5", "lots", "max "}) {
    absl::StatusOr<std::optional<std::string>> r = RepairMemoryHigh(dir_, bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  Put("memory.high", "garbage\n");
  absl::StatusOr<std::optional<std::string>> r = RepairMemoryHigh(dir_, "max");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find(dir_ + "/memory.high"), std::string::npos) << r.status();
  EXPECT_EQ(Get("memory.high"), "garbage\n");
  unlink((dir_ + "/memory.high").c_str());
  EXPECT_FALSE(RepairMemoryHigh(dir_, "max").ok());
}

TEST_F(V2Fixture, MalformedEventsFileIsAnError) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Put("memory.events", "low 0\nhigh lots\n");
  Events events;
  auto watcher = NewV2HighWatcher(**loop, dir_, events.Callback());
  ASSERT_FALSE(watcher.ok());
  EXPECT_NE(std::string(watcher.status().message()).find("bad high count"), std::string::npos);
  Put("memory.events", "low 0\n");
  EXPECT_FALSE(NewV2HighWatcher(**loop, dir_, events.Callback()).ok());
}

TEST(PsiWatcher, FiresOnACgroup2GroupUnderMemoryPressure) {
  auto layout = DetectLayout();
  ASSERT_TRUE(layout.ok());
  if (layout->v2.empty()) GTEST_SKIP() << "no cgroup2 hierarchy mounted";
  AUTOSCALE_REQUIRE_CGROUP_V1();
  // A 64 MiB v1 memory limit makes the child reclaim its own page cache while it re-reads a
  // 192 MiB file: the stall shows in the cgroup2 group's memory.pressure.
  std::string file = absl::StrCat(getenv("TEST_TMPDIR"), "/thrash");
  {
    std::vector<char> chunk(1 << 20, 'x');
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    for (int i = 0; i < 192; ++i) ASSERT_EQ(write(fd, chunk.data(), chunk.size()), 1 << 20);
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // so the child's reads charge the child
    close(fd);
  }
  auto cg = TestCgroup::Create("psi", file);
  ASSERT_TRUE(cg.ok()) << cg.status();
  auto manager = CgroupManager::Init();
  ASSERT_TRUE(manager.ok());
  ASSERT_TRUE(manager->SetMemoryLimit((*cg)->path(), 64 * kMiB).ok());
  std::string v2 = absl::StrCat(layout->v2, "/autoscale-psi-", getpid());
  if (mkdir(v2.c_str(), 0755) != 0)
    GTEST_SKIP() << "cannot create a cgroup2 group under " << layout->v2;
  struct Cleanup {
    std::string dir;
    ~Cleanup() { rmdir(dir.c_str()); }
  } cleanup{v2};
  ASSERT_TRUE(WriteFile(v2 + "/cgroup.procs", std::to_string((*cg)->child())).ok());

  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Events events;
  auto watcher = NewPsiWatcher(**loop, v2 + "/memory.pressure",
                               PsiTrigger{.stall = absl::Milliseconds(20)}, events.Callback());
  if (!watcher.ok()) GTEST_SKIP() << "the kernel refuses the PSI trigger: " << watcher.status();
  EXPECT_NE((*watcher)->Describe().find("2000000"), std::string::npos) << "a 2 s window";

  ASSERT_TRUE((*cg)->Allocate(40 * kMiB).ok());
  std::atomic<bool> stop{false};
  std::thread thrash([&] {
    while (!stop && (*cg)->Thrash().ok()) {
    }
  });
  auto e = events.Await(**loop, MemoryEvent::Kind::kPressure, absl::Seconds(30));
  stop = true;
  thrash.join();
  // Move the child back out so the cgroup2 group can be removed.
  (void)WriteFile(layout->v2 + "/cgroup.procs", std::to_string((*cg)->child()));
  ASSERT_TRUE(e.has_value()) << "no PSI event within 30s of page-cache thrashing";
}

}  // namespace
}  // namespace autoscale::monitor::cgroup
