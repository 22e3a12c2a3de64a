#include "monitor/cgroup/watchers.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"
#include "monitor/cgroup/layout.h"

namespace autoscale::monitor::cgroup {
namespace {

// Reads a whole small file through an open descriptor (kernfs files want pread at 0).
absl::StatusOr<int64_t> PreadInt64(int fd, const std::string& path) {
  char buf[64];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("read ", path));
  buf[n] = 0;
  int64_t v;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)), &v)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected an integer"));
  }
  return v;
}

class V1ThresholdWatcher final : public MemoryWatcher {
 public:
  V1ThresholdWatcher(EventLoop& loop, std::string dir, int usage_fd, MemoryEventCallback cb)
      : loop_(loop), dir_(std::move(dir)), usage_fd_(usage_fd), callback_(std::move(cb)) {}

  ~V1ThresholdWatcher() override {
    absl::MutexLock lock(&mu_);
    Disarm();
    close(usage_fd_);
  }

  absl::Status SetThreshold(int64_t threshold) override {
    absl::MutexLock lock(&mu_);
    // A v1 threshold cannot be moved: closing its eventfd unregisters it, so make a new one,
    // and close the old one after it (no moment without a watch).
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) return absl::ErrnoToStatus(errno, "eventfd");
    absl::Status s = WriteFile(dir_ + "/cgroup.event_control",
                               absl::StrCat(efd, " ", usage_fd_, " ", threshold));
    if (s.ok()) {
      s = loop_.Add(efd, EPOLLIN, [this, efd](uint32_t) { OnReady(efd); });
    }
    if (!s.ok()) {
      close(efd);
      return Annotate(s, absl::StrCat("cgroup v1 threshold ", threshold, " on ", dir_));
    }
    Disarm();
    event_fd_ = efd;
    threshold_ = threshold;
    return absl::OkStatus();
  }

  std::string Describe() const override { return "cgroup v1 usage threshold on " + dir_; }

 private:
  void Disarm() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (event_fd_ < 0) return;
    loop_.Remove(event_fd_);
    close(event_fd_);
    event_fd_ = -1;
  }

  void OnReady(int efd) {
    int64_t threshold;
    {
      // Checked before reading: an old registration's descriptor may be closed, or reused.
      absl::MutexLock lock(&mu_);
      if (efd != event_fd_) return;
      uint64_t count;
      if (read(efd, &count, sizeof(count)) != sizeof(count)) return;
      threshold = threshold_;
    }
    auto usage = PreadInt64(usage_fd_, dir_ + "/memory.usage_in_bytes");
    if (!usage.ok()) {
      LOG(WARNING) << Describe() << ": " << usage.status();
      return;
    }
    callback_(
        {*usage >= threshold ? MemoryEvent::Kind::kUsageAbove : MemoryEvent::Kind::kUsageBelow,
         *usage});
  }

  EventLoop& loop_;
  const std::string dir_;
  const int usage_fd_;
  const MemoryEventCallback callback_;
  absl::Mutex mu_;
  // The current registration: its eventfd (-1: none) and threshold.
  int event_fd_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t threshold_ ABSL_GUARDED_BY(mu_) = 0;
};

// The `high` counter of a memory.events file.
absl::StatusOr<int64_t> ReadHighCount(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
    if (kv.first != "high") continue;
    int64_t v;
    if (!absl::SimpleAtoi(kv.second, &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad high count '", kv.second, "'"));
    }
    return v;
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": no 'high' line"));
}

class V2HighWatcher final : public MemoryWatcher {
 public:
  V2HighWatcher(EventLoop& loop, std::string dir, int inotify_fd, int64_t high_count,
                MemoryEventCallback cb)
      : loop_(loop),
        dir_(std::move(dir)),
        inotify_fd_(inotify_fd),
        callback_(std::move(cb)),
        high_count_(high_count) {}

  ~V2HighWatcher() override {
    loop_.Remove(inotify_fd_);
    close(inotify_fd_);
  }

  // memory.high is never written: past it the kernel reclaims and throttles the group (Postgres
  // and its LFC page cache), so a monitor that set it to its threshold would throttle the VM at
  // 85 % of its memory, and leave it so if it crashed. The threshold is checked by sampling; this
  // watcher only reports the operator's own memory.high and memory.max being reached.
  absl::Status SetThreshold(int64_t) override { return absl::OkStatus(); }

  std::string Describe() const override {
    return "cgroup v2 memory.events (the operator's memory.high/max) on " + dir_;
  }

  void OnReady() {
    char buf[4096];
    while (read(inotify_fd_, buf, sizeof(buf)) > 0) {
    }
    auto count = ReadHighCount(dir_ + "/memory.events");
    if (!count.ok()) {
      LOG(WARNING) << Describe() << ": " << count.status();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (*count <= high_count_) return;
      high_count_ = *count;
    }
    auto usage = ReadInt64File(dir_ + "/memory.current");
    callback_({MemoryEvent::Kind::kHigh, usage.ok() ? *usage : -1});
  }

 private:
  EventLoop& loop_;
  const std::string dir_;
  const int inotify_fd_;
  const MemoryEventCallback callback_;
  absl::Mutex mu_;
  // The last `high` count seen; an event is a rise above it.
  int64_t high_count_ ABSL_GUARDED_BY(mu_);
};

class PsiWatcher final : public MemoryWatcher {
 public:
  PsiWatcher(EventLoop& loop, std::string file, int fd, std::string trigger)
      : loop_(loop), file_(std::move(file)), fd_(fd), trigger_(std::move(trigger)) {}
  ~PsiWatcher() override {
    loop_.Remove(fd_);
    close(fd_);
  }
  absl::Status SetThreshold(int64_t) override { return absl::OkStatus(); }
  std::string Describe() const override {
    return absl::StrCat("PSI trigger '", trigger_, "' on ", file_);
  }

 private:
  EventLoop& loop_;
  const std::string file_;
  const int fd_;
  const std::string trigger_;
};

}  // namespace

const char* MemoryEventKindName(MemoryEvent::Kind kind) {
  switch (kind) {
    case MemoryEvent::Kind::kUsageAbove:
      return "usage above threshold";
    case MemoryEvent::Kind::kUsageBelow:
      return "usage below threshold";
    case MemoryEvent::Kind::kHigh:
      return "memory.high exceeded";
    case MemoryEvent::Kind::kPressure:
      return "memory pressure";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<MemoryWatcher>> NewV1ThresholdWatcher(EventLoop& loop,
                                                                     const std::string& cgroup_dir,
                                                                     MemoryEventCallback callback) {
  std::string usage = cgroup_dir + "/memory.usage_in_bytes";
  int fd = open(usage.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", usage));
  return std::make_unique<V1ThresholdWatcher>(loop, cgroup_dir, fd, std::move(callback));
}

absl::Status CheckMemoryHighSetting(const std::string& setting) {
  int64_t bytes;
  if (setting == "keep" || setting == "max" || (absl::SimpleAtoi(setting, &bytes) && bytes > 0)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "memory.high setting must be max, keep or a size in bytes > 0, got '", setting, "'"));
}

absl::StatusOr<std::optional<std::string>> RepairMemoryHigh(const std::string& cgroup_dir,
                                                            const std::string& setting) {
  RETURN_IF_ERROR(CheckMemoryHighSetting(setting));
  if (setting == "keep") return std::nullopt;
  const std::string path = cgroup_dir + "/memory.high";
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  const std::string found(absl::StripAsciiWhitespace(text));
  int64_t have = 0;
  int64_t want = 0;
  if (found == setting) return std::nullopt;
  if (found != "max" && !absl::SimpleAtoi(found, &have)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not max nor a number: '", found, "'"));
  }
  if (setting != "max" && absl::SimpleAtoi(setting, &want) && found != "max") {
    // The kernel keeps memory.high in whole pages and reads it back so.
    const int64_t page = sysconf(_SC_PAGESIZE);
    if (want / page * page == have) return std::nullopt;
  }
  RETURN_IF_ERROR(WriteFile(path, setting));
  return found;
}

absl::StatusOr<std::unique_ptr<MemoryWatcher>> NewV2HighWatcher(EventLoop& loop,
                                                                const std::string& cgroup_dir,
                                                                MemoryEventCallback callback) {
  std::string events = cgroup_dir + "/memory.events";
  ASSIGN_OR_RETURN(int64_t count, ReadHighCount(events));
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, "inotify_init1");
  if (inotify_add_watch(fd, events.c_str(), IN_MODIFY) < 0) {
    int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("inotify_add_watch ", events));
  }
  auto watcher = std::make_unique<V2HighWatcher>(loop, cgroup_dir, fd, count, std::move(callback));
  V2HighWatcher* w = watcher.get();
  RETURN_IF_ERROR(loop.Add(fd, EPOLLIN, [w](uint32_t) { w->OnReady(); }));
  return watcher;
}

absl::Duration AcceptedPsiWindow(absl::Duration requested, bool has_cap_sys_resource) {
  absl::Duration w = std::clamp(requested, absl::Milliseconds(500), absl::Seconds(10));
  if (has_cap_sys_resource) return w;
  int64_t units = (absl::ToInt64Milliseconds(w) + 1999) / 2000;
  return absl::Seconds(2 * std::max<int64_t>(1, units));
}

absl::StatusOr<std::unique_ptr<MemoryWatcher>> NewPsiWatcher(EventLoop& loop,
                                                             const std::string& pressure_file,
                                                             PsiTrigger trigger,
                                                             MemoryEventCallback callback) {
  absl::Duration window = AcceptedPsiWindow(trigger.window, HasCapSysResource());
  absl::Duration stall = std::clamp(trigger.stall, absl::Microseconds(1), window);
  std::string text =
      absl::StrCat(trigger.full ? "full " : "some ", absl::ToInt64Microseconds(stall), " ",
                   absl::ToInt64Microseconds(window));
  int fd = open(pressure_file.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", pressure_file));
  // The kernel wants the trigger with its terminating NUL.
  if (write(fd, text.c_str(), text.size() + 1) < 0) {
    int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("PSI trigger '", text, "' on ", pressure_file));
  }
  auto watcher = std::make_unique<PsiWatcher>(loop, pressure_file, fd, text);
  absl::Status added = loop.Add(
      fd, EPOLLPRI, [&loop, fd, file = pressure_file, cb = std::move(callback)](uint32_t events) {
        if (events & EPOLLERR) {  // the group went away: stop, or epoll reports it forever
          LOG(WARNING) << "PSI trigger on " << file << " is gone; no more pressure events";
          loop.Remove(fd);
          return;
        }
        cb({MemoryEvent::Kind::kPressure, -1});
      });
  if (!added.ok()) return added;
  return watcher;
}

}  // namespace autoscale::monitor::cgroup
