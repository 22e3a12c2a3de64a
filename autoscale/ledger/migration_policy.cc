#include "autoscale/ledger/migration_policy.h"

#include <algorithm>
#include <numeric>

namespace autoscale::ledger {
namespace {

using core::Resources;

bool Covers(const Resources& moved, const Resources& excess) { return excess.FitsIn(moved); }

// Candidates by age, oldest first (name breaks ties, so the order is deterministic).
std::vector<size_t> ByAge(const std::vector<MigrationCandidate>& c) {
  std::vector<size_t> order(c.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (c[a].created != c[b].created) return c[a].created < c[b].created;
    return c[a].vm < c[b].vm;
  });
  return order;
}

class OldestFirst : public MigrationPolicy {
 public:
  std::string_view name() const override { return "oldest_first"; }
  std::vector<size_t> Choose(const std::vector<MigrationCandidate>& c,
                             const Resources& excess) const override {
    std::vector<size_t> chosen;
    Resources moved;
    for (size_t i : ByAge(c)) {
      if (Covers(moved, excess)) break;
      // A VM that sheds nothing still needed is no help.
      if (!(c[i].share.milli_cpu > 0 && moved.milli_cpu < excess.milli_cpu) &&
          !(c[i].share.memory_bytes > 0 && moved.memory_bytes < excess.memory_bytes)) {
        continue;
      }
      chosen.push_back(i);
      moved = moved + c[i].share;
    }
    return chosen;
  }
};

// Branch and bound over candidates sorted by memory (smallest first): include or exclude each,
// pruning a branch when it already copies at least as much as the best cover found, or when all
// the remaining candidates together cannot cover the excess.
class FewestBytes : public MigrationPolicy {
 public:
  std::string_view name() const override { return "fewest_bytes"; }
  std::vector<size_t> Choose(const std::vector<MigrationCandidate>& c,
                             const Resources& excess) const override {
    Search s(c, excess);
    s.order.resize(c.size());
    std::iota(s.order.begin(), s.order.end(), 0);
    std::sort(s.order.begin(), s.order.end(), [&](size_t a, size_t b) {
      if (c[a].permit.memory_bytes != c[b].permit.memory_bytes) {
        return c[a].permit.memory_bytes < c[b].permit.memory_bytes;
      }
      return c[a].vm < c[b].vm;
    });
    s.suffix.assign(c.size() + 1, Resources{});
    for (size_t k = c.size(); k-- > 0;) s.suffix[k] = s.suffix[k + 1] + c[s.order[k]].share;
    if (!Covers(s.suffix[0], excess)) {
      // Nothing covers it: move everything that helps, as the reference would.
      return OldestFirst().Choose(c, excess);
    }
    // Start from the reference's choice, so the search only ever improves on it.
    s.best = OldestFirst().Choose(c, excess);
    s.best_bytes = 0;
    for (size_t i : s.best) s.best_bytes += c[i].permit.memory_bytes;
    s.Visit(0, {}, 0);
    std::sort(s.best.begin(), s.best.end(), [&](size_t a, size_t b) {
      if (c[a].created != c[b].created) return c[a].created < c[b].created;
      return c[a].vm < c[b].vm;
    });
    return s.best;
  }

 private:
  static constexpr int kMaxVisits = 200000;

  struct Search {
    Search(const std::vector<MigrationCandidate>& candidates, const Resources& e)
        : c(candidates), excess(e) {}
    const std::vector<MigrationCandidate>& c;
    Resources excess;
    std::vector<size_t> order;
    std::vector<Resources> suffix;  // suffix[k]: sum of shares of order[k..]
    std::vector<size_t> current, best;
    int64_t best_bytes = 0;
    int visits = 0;

    void Visit(size_t k, Resources moved, int64_t bytes) {
      if (++visits > kMaxVisits) return;
      // Fewer bytes wins; at equal bytes, fewer VMs.
      if (bytes > best_bytes || (bytes == best_bytes && current.size() >= best.size())) return;
      if (Covers(moved, excess)) {
        best = current;
        best_bytes = bytes;
        return;
      }
      if (k == order.size() || !Covers(moved + suffix[k], excess)) return;
      const MigrationCandidate& m = c[order[k]];
      current.push_back(order[k]);
      Visit(k + 1, moved + m.share, bytes + m.permit.memory_bytes);
      current.pop_back();
      Visit(k + 1, moved, bytes);
    }
  };
};

}  // namespace

std::unique_ptr<MigrationPolicy> NewOldestFirstPolicy() { return std::make_unique<OldestFirst>(); }
std::unique_ptr<MigrationPolicy> NewFewestBytesPolicy() { return std::make_unique<FewestBytes>(); }

std::unique_ptr<MigrationPolicy> NewMigrationPolicy(std::string_view name) {
  if (name == "oldest_first") return NewOldestFirstPolicy();
  if (name == "fewest_bytes") return NewFewestBytesPolicy();
  return nullptr;
}

}  // namespace autoscale::ledger
