#include "autoscale/ledger/internal/node.h"

#include <algorithm>

namespace autoscale::ledger {
namespace internal {

int64_t Grant(int64_t have, int64_t want, int64_t step, int64_t total, int64_t others,
              uint32_t factor_milli) {
  if (want <= have) return want;
  // What the node could reserve for this VM.
  const int64_t budget = total - others;
  if (budget <= 0) return have;
  // share(x) = ceil(x * 1000 / factor) <= budget  <=>  x <= floor(budget * factor / 1000).
  const __int128 room = static_cast<__int128>(budget) * factor_milli / 1000;
  if (room <= have) return have;
  const __int128 steps = (room - have) / step;
  return have + static_cast<int64_t>(std::min<__int128>(steps * step, want - have));
}

}  // namespace internal

Resources NodeShare(const Resources& amount, const Overcommit& o) {
  return {internal::ShareOf(amount.milli_cpu, o.cpu_milli),
          internal::ShareOf(amount.memory_bytes, o.memory_milli)};
}

}  // namespace autoscale::ledger
