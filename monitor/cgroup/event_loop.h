// One epoll loop on one thread that drives every memory watcher and timer of the monitor. File
// descriptors and timers each have a callback that runs on the loop's thread.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, EventLoop::Create());
//   RETURN_IF_ERROR(loop->Add(fd, EPOLLIN, [&](uint32_t) { ... }));
//   std::thread t([&] { loop->Run(); });
//   ...
//   loop->Stop();
//   t.join();
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace autoscale::monitor::cgroup {

class EventLoop {
 public:
  using Callback = std::function<void(uint32_t events)>;

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  // Closes the loop's own descriptors and timers; registered descriptors stay open (their owners
  // close them).
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `cb` on the loop thread whenever `fd` has one of `events` (EPOLLIN, EPOLLPRI).
  // Thread-safe, also from a callback.
  absl::Status Add(int fd, uint32_t events, Callback cb);
  // Stops watching `fd`. After Remove returns on the loop thread, or after the current round of
  // callbacks when called elsewhere, `fd`'s callback is not called again.
  void Remove(int fd);

  // Calls `cb` once after `delay` (a timerfd). Returns an id for CancelTimer.
  absl::StatusOr<int> AddTimer(absl::Duration delay, std::function<void()> cb);
  void CancelTimer(int id);

  // Runs callbacks until Stop(). Call from one thread.
  void Run();
  // Waits up to `timeout` and runs the callbacks that are ready (for tests).
  absl::Status RunOnce(absl::Duration timeout);
  // Makes Run() return. Thread-safe.
  void Stop();

 private:
  EventLoop(int epoll_fd, int wake_fd) : epoll_fd_(epoll_fd), wake_fd_(wake_fd) {}

  const int epoll_fd_;
  const int wake_fd_;
  absl::Mutex mu_;
  // What each watched descriptor's callback is; shared so a running callback survives Remove.
  absl::flat_hash_map<int, std::shared_ptr<Callback>> callbacks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace autoscale::monitor::cgroup
