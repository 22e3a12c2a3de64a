// The monitor wired to a real cgroup: one epoll loop thread drives the kernel watcher and the
// memory.stat sampling timer, and feeds the Monitor (monitor.h).
//
//   CgroupMonitorOptions options{.cgroup_dir = "/sys/fs/cgroup/memory/postgres",
//                         .memory_bytes = 4 << 30};
//   ASSIGN_OR_RETURN(std::unique_ptr<CgroupMonitor> cgroup_monitor,
//                    CgroupMonitor::Start(options, resizer, [&](int64_t usage, int64_t threshold) {
//                      service.SendUpscaleRequest(usage, threshold);
//                    }));
//   cgroup_monitor->monitor().TryDownscale(2 << 30);
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "lfc/resizer.h"
#include "monitor/cgroup/event_loop.h"
#include "monitor/cgroup/watchers.h"
#include "monitor/monitor.h"

namespace autoscale::monitor {

enum class WatchMode {
  kAuto,  // the v1 threshold on a v1 group, memory.events on a v2 group
  kV1,    // cgroup v1 usage threshold (eventfd)
  kV2,    // cgroup v2 memory.events: the operator's memory.high/max (never written)
  kPsi,   // a PSI trigger on `psi_file`
  kNone,  // sampling only (like the reference)
};
absl::StatusOr<WatchMode> ParseWatchMode(std::string_view name);

struct CgroupMonitorOptions {
  // The memory cgroup's directory (v1 or v2).
  std::string cgroup_dir;
  WatchMode watch = WatchMode::kAuto;
  // For kPsi: a memory.pressure file (default: the group's own).
  std::string psi_file;
  cgroup::PsiTrigger psi;
  MonitorOptions monitor;
  // The VM's memory at start.
  int64_t memory_bytes = 0;
  // On a cgroup v2 group: the memory.high the operator wants (cgroup::RepairMemoryHigh), set at
  // start if something else is there (a leftover of monitor 0.1.0). "keep": not checked.
  std::string memory_high = "keep";
};

// A Monitor (monitor.h) fed by one cgroup: its loop thread, kernel watcher and sampling timer.
class CgroupMonitor {
 public:
  // Starts the loop thread, arms the watcher, sizes the LFC and takes the first sample.
  static absl::StatusOr<std::unique_ptr<CgroupMonitor>> Start(
      const CgroupMonitorOptions& options, lfc::LfcResizer& resizer,
      std::function<void(int64_t usage, int64_t threshold)> request_upscale,
      Clock& clock = Clock::Real());
  ~CgroupMonitor();

  Monitor& monitor() { return *monitor_; }
  // "cgroup v1 usage threshold on /sys/fs/cgroup/memory/x" (or "sampling only").
  std::string Describe() const;

 private:
  CgroupMonitor() = default;
  void ScheduleSample(absl::Duration delay);

  std::string cgroup_dir_;
  absl::Duration sample_interval_;
  std::unique_ptr<cgroup::EventLoop> loop_;
  std::unique_ptr<Monitor> monitor_;
  std::unique_ptr<cgroup::MemoryWatcher> watcher_;
  std::thread thread_;
  // Retries LFC sizing (Monitor::RetryLfc) every kLfcRetryTick until stop_.
  static constexpr absl::Duration kLfcRetryTick = absl::Milliseconds(250);
  absl::Notification stop_;
  std::thread lfc_thread_;
};

}  // namespace autoscale::monitor
