#include "autoscale/sim/internal/monitor_model.h"

namespace autoscale::sim {

std::optional<int64_t> MonitorModel::average_usage_bytes() const {
  if (count_ == 0) return std::nullopt;
  return sum_ / count_;
}

bool MonitorModel::Record(absl::Time now, int64_t usage_bytes, bool instant) {
  const int keep = options_->samples_averaged;
  if (count_ == keep) {
    sum_ -= samples_[(next_ + kMaxSamples - keep) % kMaxSamples];
  } else {
    ++count_;
  }
  samples_[next_] = usage_bytes;
  next_ = (next_ + 1) % kMaxSamples;
  sum_ += usage_bytes;
  last_sample_ = now;
  // A watcher event is acted on at once, the timer on the average.
  const int64_t usage = instant ? usage_bytes : sum_ / count_;
  if (usage < threshold_bytes_) return false;
  if (now - last_upscale_request_ < options_->upscale_request_min_interval) return false;
  last_upscale_request_ = now;
  ++upscale_requests_;
  return true;
}

MonitorModel::Decision MonitorModel::TryDownscale(absl::Time now, int64_t target) {
  if (count_ == 0 || now - last_sample_ > options_->max_sample_age) return Decision::kError;
  if (count_ < options_->min_samples) return Decision::kDenied;
  if (monitor::ThresholdBytes(target, *options_) <
      sum_ / count_ + options_->downscale_headroom_bytes) {
    return Decision::kDenied;
  }
  SetMemory(target);
  return Decision::kApproved;
}

}  // namespace autoscale::sim
