#include "monitor/cgroup/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::monitor::cgroup {

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return absl::ErrnoToStatus(errno, "epoll_create1");
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    int err = errno;
    close(ep);
    return absl::ErrnoToStatus(err, "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) < 0) {
    int err = errno;
    close(ep);
    close(wake);
    return absl::ErrnoToStatus(err, "epoll_ctl add wake fd");
  }
  return std::unique_ptr<EventLoop>(new EventLoop(ep, wake));
}

EventLoop::~EventLoop() {
  close(epoll_fd_);
  close(wake_fd_);
}

absl::Status EventLoop::Add(int fd, uint32_t events, Callback cb) {
  absl::MutexLock lock(&mu_);
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("epoll_ctl add fd ", fd));
  }
  callbacks_[fd] = std::make_shared<Callback>(std::move(cb));
  return absl::OkStatus();
}

void EventLoop::Remove(int fd) {
  absl::MutexLock lock(&mu_);
  if (callbacks_.erase(fd) == 0) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

absl::StatusOr<int> EventLoop::AddTimer(absl::Duration delay, std::function<void()> cb) {
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, "timerfd_create");
  itimerspec spec{};
  if (delay <= absl::ZeroDuration()) delay = absl::Nanoseconds(1);  // 0 would disarm it
  spec.it_value = absl::ToTimespec(delay);
  if (timerfd_settime(fd, 0, &spec, nullptr) < 0) {
    int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, "timerfd_settime");
  }
  absl::Status added = Add(fd, EPOLLIN, [this, fd, cb = std::move(cb)](uint32_t) {
    uint64_t expirations;
    if (read(fd, &expirations, sizeof(expirations)) != sizeof(expirations)) return;
    CancelTimer(fd);
    cb();
  });
  if (!added.ok()) {
    close(fd);
    return added;
  }
  return fd;
}

void EventLoop::CancelTimer(int id) {
  bool known;
  {
    absl::MutexLock lock(&mu_);
    known = callbacks_.contains(id);
  }
  if (!known) return;
  Remove(id);
  close(id);
}

absl::Status EventLoop::RunOnce(absl::Duration timeout) {
  epoll_event events[16];
  int n = epoll_wait(epoll_fd_, events, 16, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (n < 0) {
    if (errno == EINTR) return absl::OkStatus();
    return absl::ErrnoToStatus(errno, "epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == wake_fd_) {
      uint64_t v;
      (void)!read(wake_fd_, &v, sizeof(v));
      continue;
    }
    std::shared_ptr<Callback> cb;
    {
      absl::MutexLock lock(&mu_);
      auto it = callbacks_.find(fd);
      if (it == callbacks_.end()) continue;  // removed by an earlier callback of this round
      cb = it->second;
    }
    (*cb)(events[i].events);
  }
  return absl::OkStatus();
}

void EventLoop::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) {
        stop_ = false;
        return;
      }
    }
    absl::Status s = RunOnce(absl::Seconds(60));
    if (!s.ok()) {
      LOG(ERROR) << "monitor event loop: " << s;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
}

void EventLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

}  // namespace autoscale::monitor::cgroup
