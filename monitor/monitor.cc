#include "monitor/monitor.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::monitor {
namespace {

std::string MiB(int64_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }

}  // namespace

Monitor::Monitor(const MonitorOptions& options, Clock& clock, lfc::LfcResizer& resizer, Hooks hooks)
    : options_(options), clock_(clock), resizer_(resizer), hooks_(std::move(hooks)) {}

absl::Status Monitor::ApplyThreshold(int64_t memory_bytes) {
  memory_bytes_ = memory_bytes;
  threshold_bytes_ = ThresholdBytes(memory_bytes, options_);
  return Arm(/*force=*/true);
}

absl::Status Monitor::Arm(bool force) {
  const int64_t level = threshold_bytes_ + overhead_bytes_;
  // A level a little below where anon meets the threshold only fires early (the event re-arms
  // exactly), but one above it misses a crossing smaller than the gap and leaves it to the
  // timer's average, seconds later: so the slack above is much smaller than the one below.
  if (!force && !rearm_needed_ && armed_level_ >= 0 &&
      level - armed_level_ <= options_.rearm_slack_bytes &&
      armed_level_ - level <= options_.rearm_slack_above_bytes) {
    return absl::OkStatus();
  }
  if (hooks_.set_threshold) {
    absl::Status armed = hooks_.set_threshold(level);
    if (!armed.ok()) {
      rearm_needed_ = true;  // the next sample tries again
      return Annotate(armed, "arming the memory watcher");
    }
  }
  armed_level_ = level;
  rearm_needed_ = false;
  return absl::OkStatus();
}

absl::Status Monitor::Start(int64_t memory_bytes) {
  absl::MutexLock resize(&resize_mu_);
  {
    absl::MutexLock lock(&mu_);
    memory_bytes_ = memory_bytes;  // what a retry sizes for
  }
  // Not fatal: Postgres is usually not up yet; RetryLfc tries again with back-off.
  absl::Status lfc = SizeLfc(memory_bytes);
  if (!lfc.ok()) LOG(WARNING) << "monitor: sizing the LFC at start (will retry): " << lfc;
  absl::MutexLock lock(&mu_);
  return ApplyThreshold(memory_bytes);
}

absl::Status Monitor::SizeLfc(int64_t memory_bytes) {
  absl::Status s = resizer_.SetSizeBytes(lfc::CacheSizeBytes(memory_bytes, options_.lfc));
  absl::MutexLock lock(&mu_);
  if (s.ok()) {
    lfc_pending_ = false;
    lfc_backoff_ = kLfcFirstRetry;
  } else {
    lfc_pending_ = true;
    next_lfc_try_ = clock_.Now() + lfc_backoff_;
    lfc_backoff_ = std::min(2 * lfc_backoff_, kLfcMaxRetry);
  }
  return s;
}

absl::Status Monitor::RetryLfc() {
  absl::MutexLock resize(&resize_mu_);
  int64_t memory;
  {
    absl::MutexLock lock(&mu_);
    if (!lfc_pending_ || clock_.Now() < next_lfc_try_) return absl::OkStatus();
    memory = memory_bytes_;
  }
  absl::Status s = SizeLfc(memory);
  if (s.ok()) LOG(INFO) << "monitor: sized the LFC for " << MiB(memory);
  return s;
}

void Monitor::ResizeLfcSoon() {
  absl::MutexLock lock(&mu_);
  lfc_pending_ = true;
  next_lfc_try_ = clock_.Now();
  lfc_backoff_ = kLfcFirstRetry;
}

bool Monitor::lfc_pending() const {
  absl::MutexLock lock(&mu_);
  return lfc_pending_;
}

std::optional<int64_t> Monitor::Average() const {
  if (samples_.empty()) return std::nullopt;
  int64_t sum = 0;
  for (const UsageSample& s : samples_) sum += s.anon_bytes;
  return sum / static_cast<int64_t>(samples_.size());
}

bool Monitor::UpscaleDue() {
  const absl::Time now = clock_.Now();
  if (last_upscale_request_ &&
      now - *last_upscale_request_ < options_.upscale_request_min_interval) {
    return false;
  }
  last_upscale_request_ = now;
  ++upscale_requests_;
  return true;
}

bool Monitor::RecordAndCheck(const cgroup::MemoryStat& stat, bool instant) {
  int64_t anon = stat.anon_bytes;
  if (stat.usage_bytes >= 0) {
    if (instant) {
      // At a watcher event the kernel has charged the new memory but the faulting task may not
      // have mapped it yet, so anon can lag by a whole huge page. Estimate anon from the charge
      // instead, minus the overhead last measured plus any page cache added since.
      overhead_bytes_ += std::max<int64_t>(0, stat.file_bytes - last_file_bytes_);
      anon = std::max(anon, stat.usage_bytes - overhead_bytes_);
    } else {
      overhead_bytes_ = std::max<int64_t>(0, stat.usage_bytes - stat.anon_bytes);
    }
    last_file_bytes_ = stat.file_bytes;
    // After an event that was not anon reaching the threshold, re-arm exactly: a level left
    // within the slack below where anon reaches the threshold would never fire again.
    const bool exact = instant && anon < threshold_bytes_;
    absl::Status armed = Arm(/*force=*/exact);
    if (!armed.ok()) {
      LOG_EVERY_N(WARNING, 10) << "monitor: " << armed;
    }
  }
  samples_.push_back({clock_.Now(), anon});
  while (static_cast<int>(samples_.size()) > options_.samples_averaged) samples_.pop_front();
  // A watcher event is acted on at once; the timer uses the average, like the reference, so a
  // short spike between samples is smoothed.
  int64_t usage = instant ? anon : *Average();
  return usage >= threshold_bytes_ && UpscaleDue();
}

void Monitor::SendUpscale(int64_t usage, int64_t threshold) {
  LOG(INFO) << "monitor: memory usage " << MiB(usage) << " passed the threshold " << MiB(threshold)
            << "; asking for more memory";
  if (hooks_.request_upscale) hooks_.request_upscale(usage, threshold);
}

void Monitor::Sample() {
  absl::StatusOr<cgroup::MemoryStat> stat = hooks_.read_stat();
  if (!stat.ok()) {
    LOG_EVERY_N(WARNING, 10) << "monitor: reading memory usage: " << stat.status();
    return;
  }
  bool upscale;
  int64_t usage, threshold;
  {
    absl::MutexLock lock(&mu_);
    upscale = RecordAndCheck(*stat, /*instant=*/false);
    usage = *Average();
    threshold = threshold_bytes_;
  }
  if (upscale) SendUpscale(usage, threshold);
}

void Monitor::OnMemoryEvent(const cgroup::MemoryEvent& event) {
  VLOG(1) << "monitor: " << cgroup::MemoryEventKindName(event.kind) << ", usage "
          << MiB(event.usage_bytes);
  if (event.kind == cgroup::MemoryEvent::Kind::kUsageBelow) return;
  int64_t usage = event.usage_bytes, threshold;
  bool upscale = false;
  if (event.kind == cgroup::MemoryEvent::Kind::kPressure) {
    // Stalls on memory: the working set does not fit, whatever the anon share is.
    absl::MutexLock lock(&mu_);
    threshold = threshold_bytes_;
    upscale = UpscaleDue();
  } else {
    // The group's charge reached the watch level; only non-reclaimable memory counts. If it was
    // page cache, this sample re-arms the watcher above it.
    absl::StatusOr<cgroup::MemoryStat> stat = hooks_.read_stat();
    if (!stat.ok()) {
      LOG(WARNING) << "monitor: reading memory usage after a watcher event: " << stat.status();
      absl::MutexLock lock(&mu_);
      rearm_needed_ = true;  // the level was crossed: the next sample moves it
      return;
    }
    absl::MutexLock lock(&mu_);
    upscale = RecordAndCheck(*stat, /*instant=*/true);
    usage = samples_.back().anon_bytes;
    threshold = threshold_bytes_;
  }
  if (upscale) SendUpscale(usage, threshold);
}

absl::StatusOr<Monitor::DownscaleDecision> Monitor::TryDownscale(int64_t target) {
  absl::MutexLock resize(&resize_mu_);
  absl::ReleasableMutexLock lock(&mu_);
  const int64_t new_threshold = ThresholdBytes(target, options_);
  const absl::Time now = clock_.Now();
  if (samples_.empty() || now - samples_.back().at > options_.max_sample_age) {
    return absl::UnavailableError(absl::StrCat("downscale check: no memory sample in the last ",
                                               absl::FormatDuration(options_.max_sample_age),
                                               " (is the cgroup readable?)"));
  }
  if (static_cast<int>(samples_.size()) < options_.min_samples) {
    return DownscaleDecision{false, absl::StrCat("not enough memory samples yet (", samples_.size(),
                                                 " of ", options_.min_samples, ")")};
  }
  const int64_t average = *Average();
  if (new_threshold < average + options_.downscale_headroom_bytes) {
    return DownscaleDecision{
        false, absl::StrCat("memory usage ", MiB(average), " + headroom ",
                            MiB(options_.downscale_headroom_bytes), " would exceed the threshold ",
                            MiB(new_threshold), " at ", MiB(target))};
  }
  // The LFC shrinks first: once we approve, the memory may be gone. Without mu_, so samples
  // (the event loop) never wait on Postgres.
  lock.Release();
  absl::Status lfc = SizeLfc(target);
  if (!lfc.ok()) {
    return Annotate(lfc, absl::StrCat("downscale to ", MiB(target), ": shrinking the LFC first"));
  }
  absl::MutexLock relock(&mu_);
  absl::Status armed = ApplyThreshold(target);
  if (!armed.ok()) LOG(WARNING) << "monitor: " << armed;
  return DownscaleDecision{true, absl::StrCat("approved: usage ", MiB(average), ", threshold ",
                                              MiB(new_threshold), " at ", MiB(target))};
}

absl::Status Monitor::NotifyUpscale(int64_t granted) {
  absl::MutexLock resize(&resize_mu_);
  // The memory is there already: raise the threshold first, then let the LFC use it.
  absl::Status armed;
  {
    absl::MutexLock lock(&mu_);
    armed = ApplyThreshold(granted);
  }
  absl::Status lfc = SizeLfc(granted);
  RETURN_IF_ERROR(armed);
  return Annotate(lfc, absl::StrCat("upscale to ", MiB(granted), ": growing the LFC"));
}

int64_t Monitor::memory_bytes() const {
  absl::MutexLock lock(&mu_);
  return memory_bytes_;
}

int64_t Monitor::threshold_bytes() const {
  absl::MutexLock lock(&mu_);
  return threshold_bytes_;
}

int64_t Monitor::watch_level_bytes() const {
  absl::MutexLock lock(&mu_);
  return armed_level_;
}

std::optional<int64_t> Monitor::average_usage_bytes() const {
  absl::MutexLock lock(&mu_);
  return Average();
}

int64_t Monitor::upscale_requests() const {
  absl::MutexLock lock(&mu_);
  return upscale_requests_;
}

}  // namespace autoscale::monitor
