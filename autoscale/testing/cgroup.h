// A real memory cgroup under this process's own v1 memory cgroup, with a child process in it that
// allocates memory on command. Everything is removed in the destructor, also when the test fails,
// and the child dies with the test.
//
//   AUTOSCALE_REQUIRE_CGROUP_V1();               // skips, naming what is missing
//   auto cg = TestCgroup::Create("watch");
//   ASSERT_TRUE(cg.ok()) << cg.status();
//   ASSERT_TRUE((*cg)->Allocate(64 << 20).ok());  // the child touches 64 MiB more
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autoscale/base/subprocess.h"
#include "autoscale/testing/skip.h"
#include "monitor/cgroup/manager.h"

#define AUTOSCALE_REQUIRE_CGROUP_V1() AUTOSCALE_REQUIRE(::autoscale::testing::CgroupV1Missing())

namespace autoscale::testing {

// Empty when this process may create v1 memory cgroups under its own (it tries); otherwise what
// is missing.
std::string CgroupV1Missing();

class TestCgroup {
 public:
  // Fails (with a message naming what is missing) when there is no writable v1 memory cgroup.
  // `thrash_file` is what Thrash() reads (optional).
  static absl::StatusOr<std::unique_ptr<TestCgroup>> Create(const std::string& name,
                                                            const std::string& thrash_file = "");
  ~TestCgroup();

  // The group's directory ("/sys/fs/cgroup/memory/.../name") and libcgroup path.
  const std::string& dir() const { return dir_; }
  const std::string& path() const { return path_; }
  pid_t child() const { return child_->pid(); }

  // The child allocates and touches `bytes` more memory (anonymous), then answers.
  absl::Status Allocate(int64_t bytes);
  // The child maps and touches `bytes` more shared memory (a memfd: shmem, as /dev/shm and
  // Postgres's shared_buffers), charged to the group.
  absl::Status AllocateShared(int64_t bytes);
  // The child frees everything it allocated.
  absl::Status FreeAll();
  // The child reads the thrash file ten times (page cache churn under a memory limit).
  absl::Status Thrash();
  // The child touches a 2 MiB transparent huge page (one charge of 2 MiB where THP is available)
  // and returns the CLOCK_MONOTONIC time, in ns, just before the touch.
  absl::StatusOr<int64_t> TouchHugePage();

 private:
  TestCgroup(monitor::cgroup::CgroupManager manager, std::string path, std::string dir)
      : manager_(manager), path_(std::move(path)), dir_(std::move(dir)) {}
  absl::Status Command(int64_t command);

  monitor::cgroup::CgroupManager manager_;
  std::string path_;
  std::string dir_;
  std::unique_ptr<Subprocess> child_;
  int to_child_ = -1;
  int from_child_ = -1;
};

}  // namespace autoscale::testing
