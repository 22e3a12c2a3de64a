#pragma once

#include <functional>

#include "absl/time/time.h"

namespace autoscale::testing {

// Polls `done` every 5 ms until it holds or `timeout` of real time has passed; whether it holds.
// Tests wait with it for what they expect of threads that run on their own, never for a time.
bool Eventually(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20));

}  // namespace autoscale::testing
