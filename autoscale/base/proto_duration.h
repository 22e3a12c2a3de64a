// google.protobuf.Duration (how the config protos spell durations) as an absl::Duration.
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"

namespace autoscale {

inline absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace autoscale
