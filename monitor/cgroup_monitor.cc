#include "monitor/cgroup_monitor.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"
#include "monitor/cgroup/layout.h"

namespace autoscale::monitor {

absl::StatusOr<WatchMode> ParseWatchMode(std::string_view name) {
  if (name == "auto") return WatchMode::kAuto;
  if (name == "v1") return WatchMode::kV1;
  if (name == "v2") return WatchMode::kV2;
  if (name == "psi") return WatchMode::kPsi;
  if (name == "none") return WatchMode::kNone;
  return absl::InvalidArgumentError(absl::StrCat("unknown watch mode '",
                                                 absl::string_view(name.data(), name.size()),
                                                 "' (want auto, v1, v2, psi or none)"));
}

absl::StatusOr<std::unique_ptr<CgroupMonitor>> CgroupMonitor::Start(
    const CgroupMonitorOptions& options, lfc::LfcResizer& resizer,
    std::function<void(int64_t, int64_t)> request_upscale, Clock& clock) {
  if (options.memory_bytes <= 0) {
    return absl::InvalidArgumentError("monitor: the VM's memory must be > 0");
  }
  auto cgroup_monitor = std::unique_ptr<CgroupMonitor>(new CgroupMonitor);
  cgroup_monitor->cgroup_dir_ = options.cgroup_dir;
  ASSIGN_OR_RETURN(cgroup_monitor->loop_, cgroup::EventLoop::Create());

  const std::string stat_file = options.cgroup_dir + "/memory.stat";
  // The group's total charge: v1 memory.usage_in_bytes, v2 memory.current.
  const std::string usage_file = std::ifstream(options.cgroup_dir + "/memory.usage_in_bytes").good()
                                     ? options.cgroup_dir + "/memory.usage_in_bytes"
                                     : options.cgroup_dir + "/memory.current";
  CgroupMonitor* r = cgroup_monitor.get();
  cgroup_monitor->monitor_ = std::make_unique<Monitor>(
      options.monitor, clock, resizer,
      Monitor::Hooks{
          .read_stat = [stat_file, usage_file]() -> absl::StatusOr<cgroup::MemoryStat> {
            ASSIGN_OR_RETURN(int64_t usage, cgroup::ReadInt64File(usage_file));
            ASSIGN_OR_RETURN(std::string text, ReadFile(stat_file));
            ASSIGN_OR_RETURN(cgroup::MemoryStat stat, cgroup::ParseMemoryStat(text, stat_file));
            stat.usage_bytes = usage;
            return stat;
          },
          .set_threshold =
              [r](int64_t threshold) {
                return r->watcher_ ? r->watcher_->SetThreshold(threshold) : absl::OkStatus();
              },
          .request_upscale = std::move(request_upscale),
      });

  // A v2 group (memory.high exists): repair what an older monitor may have left behind.
  if (std::ifstream(options.cgroup_dir + "/memory.high").good()) {
    ASSIGN_OR_RETURN(std::optional<std::string> found,
                     cgroup::RepairMemoryHigh(options.cgroup_dir, options.memory_high));
    if (found.has_value()) {
      LOG(WARNING) << "monitor: memory.high of " << options.cgroup_dir << " was " << *found
                   << ", not the operator's " << options.memory_high
                   << " (left by monitor 0.1.0, which set it to its threshold?); set it to "
                   << options.memory_high;
    }
  } else if (absl::Status s = cgroup::CheckMemoryHighSetting(options.memory_high); !s.ok()) {
    return s;
  }

  WatchMode mode = options.watch;
  if (mode == WatchMode::kAuto) {
    bool v1 = usage_file.ends_with("memory.usage_in_bytes");
    mode = v1 ? WatchMode::kV1 : WatchMode::kV2;
  }
  auto on_event = [r](const cgroup::MemoryEvent& e) { r->monitor_->OnMemoryEvent(e); };
  switch (mode) {
    case WatchMode::kV1: {
      ASSIGN_OR_RETURN(
          cgroup_monitor->watcher_,
          cgroup::NewV1ThresholdWatcher(*cgroup_monitor->loop_, options.cgroup_dir, on_event));
      break;
    }
    case WatchMode::kV2: {
      ASSIGN_OR_RETURN(
          cgroup_monitor->watcher_,
          cgroup::NewV2HighWatcher(*cgroup_monitor->loop_, options.cgroup_dir, on_event));
      break;
    }
    case WatchMode::kPsi: {
      std::string file =
          options.psi_file.empty() ? options.cgroup_dir + "/memory.pressure" : options.psi_file;
      ASSIGN_OR_RETURN(cgroup_monitor->watcher_,
                       cgroup::NewPsiWatcher(*cgroup_monitor->loop_, file, options.psi, on_event));
      break;
    }
    case WatchMode::kAuto:
    case WatchMode::kNone:
      break;
  }
  RETURN_IF_ERROR(cgroup_monitor->monitor_->Start(options.memory_bytes));
  cgroup_monitor->sample_interval_ = options.monitor.sample_interval;
  cgroup_monitor->ScheduleSample(absl::ZeroDuration());
  cgroup_monitor->thread_ = std::thread([r] { r->loop_->Run(); });
  // LFC sizing talks to Postgres, which may be slow or not up yet: its retries have their own
  // thread, never the event loop's.
  cgroup_monitor->lfc_thread_ = std::thread([r] {
    while (!r->stop_.WaitForNotificationWithTimeout(kLfcRetryTick)) {
      absl::Status s = r->monitor_->RetryLfc();
      // Failures back off to one a minute, so each is logged.
      if (!s.ok()) LOG(WARNING) << "monitor: sizing the LFC (will retry): " << s;
    }
  });
  LOG(INFO) << "monitor: watching " << cgroup_monitor->Describe() << ", memory "
            << options.memory_bytes / (1 << 20) << " MiB (kernel overhead "
            << options.monitor.kernel_overhead_bytes / (1 << 20) << " MiB), threshold "
            << cgroup_monitor->monitor_->threshold_bytes() / (1 << 20) << " MiB";
  return cgroup_monitor;
}

void CgroupMonitor::ScheduleSample(absl::Duration delay) {
  auto timer = loop_->AddTimer(delay, [this] {
    monitor_->Sample();
    ScheduleSample(sample_interval_);
  });
  if (!timer.ok()) LOG(ERROR) << "monitor: cannot schedule the next sample: " << timer.status();
}

CgroupMonitor::~CgroupMonitor() {
  stop_.Notify();
  if (lfc_thread_.joinable()) lfc_thread_.join();
  loop_->Stop();
  if (thread_.joinable()) thread_.join();
  watcher_.reset();
}

std::string CgroupMonitor::Describe() const {
  return watcher_ ? watcher_->Describe() : "sampling only of " + cgroup_dir_;
}

}  // namespace autoscale::monitor
