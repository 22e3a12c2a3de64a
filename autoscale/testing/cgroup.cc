#include "autoscale/testing/cgroup.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "monitor/cgroup/layout.h"

namespace autoscale::testing {
namespace {

// The child: runs commands from `in` (bytes to allocate; -1 frees all; -2 reads `thrash_file`
// ten times; -3 touches a 2 MiB huge page and answers the CLOCK_MONOTONIC time before; -4 and a
// size: that much shared memory (a memfd, what /dev/shm and Postgres's shared_buffers are);
// 0 exits) and answers one byte on `out`. Only async-signal-safe calls: the parent may have
// threads.
[[noreturn]] void ChildMain(int in, int out, const char* thrash_file) {
  void* blocks[4096];
  size_t sizes[4096];
  int n = 0;
  while (true) {
    int64_t cmd;
    if (read(in, &cmd, sizeof(cmd)) != sizeof(cmd) || cmd == 0) _exit(0);
    if (cmd == -3) {
      // One 2 MiB transparent huge page, charged in one fault: the crossing happens at a known
      // instant, which is sent back.
      char* raw = static_cast<char*>(
          mmap(nullptr, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (raw == MAP_FAILED) _exit(3);
      char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + (2 << 20) - 1) &
                                        ~uintptr_t{(2 << 20) - 1});
      madvise(p, 2 << 20, MADV_HUGEPAGE);
      timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      for (int64_t off = 0; off < (2 << 20); off += 4096) p[off] = 1;  // one fault with THP
      if (n < 4096) {
        blocks[n] = raw;
        sizes[n++] = 4 << 20;
      }
      int64_t ns = ts.tv_sec * 1000000000LL + ts.tv_nsec;
      if (write(out, &ns, sizeof(ns)) != sizeof(ns)) _exit(4);
      continue;
    }
    if (cmd == -4) {
      int64_t bytes;
      if (read(in, &bytes, sizeof(bytes)) != sizeof(bytes) || bytes <= 0) _exit(6);
      int fd = static_cast<int>(syscall(SYS_memfd_create, "test-shmem", 0));
      if (fd < 0 || ftruncate(fd, bytes) != 0) _exit(7);
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) _exit(3);
      close(fd);  // the mapping keeps the memory; munmap frees it
      for (int64_t off = 0; off < bytes; off += 4096) static_cast<char*>(p)[off] = 1;
      if (n < 4096) {
        blocks[n] = p;
        sizes[n++] = bytes;
      }
    } else if (cmd == -2) {
      static char buf[1 << 16];
      for (int round = 0; round < 10; ++round) {
        int fd = open(thrash_file, O_RDONLY);
        if (fd < 0) _exit(5);
        while (read(fd, buf, sizeof(buf)) > 0) {
        }
        close(fd);
      }
    } else if (cmd < 0) {
      for (int i = 0; i < n; ++i) munmap(blocks[i], sizes[i]);
      n = 0;
    } else if (n < 4096) {
      void* p = mmap(nullptr, cmd, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) _exit(3);
      for (int64_t off = 0; off < cmd; off += 4096) static_cast<char*>(p)[off] = 1;
      blocks[n] = p;
      sizes[n++] = cmd;
    }
    char ok = 1;
    if (write(out, &ok, 1) != 1) _exit(4);
  }
}

}  // namespace

std::string CgroupV1Missing() {
  absl::StatusOr<monitor::cgroup::Layout> layout = monitor::cgroup::DetectLayout();
  if (!layout.ok()) return std::string(layout.status().message());
  if (layout->v1_memory.empty()) {
    return "no cgroup v1 memory controller mounted (layout: " + layout->Describe() + ")";
  }
  absl::StatusOr<std::string> own = monitor::cgroup::OwnCgroup("memory");
  if (!own.ok()) return std::string(own.status().message());
  const std::string parent = layout->v1_memory + (*own == "/" ? "" : *own);
  const std::string probe = absl::StrCat(parent, "/autoscale-probe-", getpid());
  if (mkdir(probe.c_str(), 0755) != 0) {
    return absl::StrCat("cannot create a v1 memory cgroup under ", parent, ": ",
                        std::strerror(errno),
                        " (needs root, outside Bazel's sandbox: tag the test no-sandbox)");
  }
  rmdir(probe.c_str());
  return "";
}

absl::StatusOr<std::unique_ptr<TestCgroup>> TestCgroup::Create(const std::string& name,
                                                               const std::string& thrash_file) {
  ASSIGN_OR_RETURN(monitor::cgroup::Layout layout, monitor::cgroup::DetectLayout());
  if (layout.v1_memory.empty()) {
    return absl::FailedPreconditionError(
        "no cgroup v1 memory controller mounted (layout: " + layout.Describe() + ")");
  }
  ASSIGN_OR_RETURN(std::string own, monitor::cgroup::OwnCgroup("memory"));
  if (own == "/") own = "";
  static std::atomic<int> counter{0};
  std::string path = absl::StrCat(own, "/autoscale-", name, "-", getpid(), "-", counter++);
  ASSIGN_OR_RETURN(monitor::cgroup::CgroupManager manager, monitor::cgroup::CgroupManager::Init());
  absl::Status created = manager.Create(path);
  if (!created.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create a v1 memory cgroup under ", layout.v1_memory, own,
                     " (not writable here?): ", created.message()));
  }
  auto cg = std::unique_ptr<TestCgroup>(new TestCgroup(manager, path, layout.v1_memory + path));

  int to_child[2], from_child[2];
  if (pipe2(to_child, O_CLOEXEC) < 0) return absl::ErrnoToStatus(errno, "pipe");
  cg->to_child_ = to_child[1];
  if (pipe2(from_child, O_CLOEXEC) < 0) {
    close(to_child[0]);
    return absl::ErrnoToStatus(errno, "pipe");
  }
  cg->from_child_ = from_child[0];
  absl::StatusOr<pid_t> pid =
      ForkChild([&]() -> int { ChildMain(to_child[0], from_child[1], thrash_file.c_str()); });
  close(to_child[0]);
  close(from_child[1]);
  if (!pid.ok()) return pid.status();
  cg->child_ = std::make_unique<Subprocess>(*pid);
  // Before the child allocates: a process's existing memory does not move with it.
  RETURN_IF_ERROR(manager.Attach(path, *pid));
  return cg;
}

TestCgroup::~TestCgroup() {
  child_.reset();  // kills and reaps it
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  // The kernel may take a moment to uncharge a killed process.
  for (int i = 0; i < 50; ++i) {
    if (manager_.Delete(path_).ok() || rmdir(dir_.c_str()) == 0 || errno == ENOENT) return;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status TestCgroup::Command(int64_t command) {
  if (write(to_child_, &command, sizeof(command)) != sizeof(command)) {
    return absl::ErrnoToStatus(errno, "command to the test cgroup's child");
  }
  char ok;
  if (read(from_child_, &ok, 1) != 1) {
    return absl::InternalError("the test cgroup's child died (out of memory?)");
  }
  return absl::OkStatus();
}

absl::Status TestCgroup::Allocate(int64_t bytes) { return Command(bytes); }

absl::Status TestCgroup::AllocateShared(int64_t bytes) {
  if (bytes <= 0) return absl::InvalidArgumentError("AllocateShared: bytes must be positive");
  const int64_t command[2] = {-4, bytes};
  if (write(to_child_, command, sizeof(command)) != sizeof(command)) {
    return absl::ErrnoToStatus(errno, "command to the test cgroup's child");
  }
  char ok;
  if (read(from_child_, &ok, 1) != 1) {
    return absl::InternalError("the test cgroup's child died allocating shared memory");
  }
  return absl::OkStatus();
}
absl::Status TestCgroup::FreeAll() { return Command(-1); }
absl::Status TestCgroup::Thrash() { return Command(-2); }

absl::StatusOr<int64_t> TestCgroup::TouchHugePage() {
  int64_t command = -3;
  if (write(to_child_, &command, sizeof(command)) != sizeof(command)) {
    return absl::ErrnoToStatus(errno, "command to the test cgroup's child");
  }
  int64_t ns;
  if (read(from_child_, &ns, sizeof(ns)) != sizeof(ns)) {
    return absl::InternalError("the test cgroup's child died (out of memory?)");
  }
  return ns;
}

}  // namespace autoscale::testing
