// google.protobuf.Duration (how the protos spell durations) to and from absl::Duration.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"

namespace autoscale {

inline absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Whole nanoseconds (the proto's resolution); infinite durations become the proto's bounds.
inline google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration p;
  constexpr int64_t kMaxSeconds = 315'576'000'000;  // the proto's range: +-10,000 years
  if (d >= absl::Seconds(kMaxSeconds)) {
    p.set_seconds(kMaxSeconds);
    return p;
  }
  if (d <= -absl::Seconds(kMaxSeconds)) {
    p.set_seconds(-kMaxSeconds);
    return p;
  }
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  p.set_seconds(seconds);
  p.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return p;
}

}  // namespace autoscale
