// How the simulator weighs CPU and memory together: the larger of the two shares of a compute
// unit (a VM's size in CUs) or of a node's total (a node's reservation).
#pragma once

#include <algorithm>
#include <cstdint>

#include "autoscale/core/resources.h"

namespace autoscale::sim {

inline double LargerShare(int64_t milli_cpu, int64_t memory_bytes, const core::Resources& of) {
  return std::max(static_cast<double>(milli_cpu) / static_cast<double>(of.milli_cpu),
                  static_cast<double>(memory_bytes) / static_cast<double>(of.memory_bytes));
}

inline double LargerShare(const core::Resources& r, const core::Resources& of) {
  return LargerShare(r.milli_cpu, r.memory_bytes, of);
}

}  // namespace autoscale::sim
