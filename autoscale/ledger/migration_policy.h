// MigrationPolicy: which VMs leave a node whose reservation (minus what already migrates) is
// above its watermark. The ledger hands a policy the node's candidates (migratable, not already
// migrating, and each small enough to fit under the watermark on its own) and the excess to shed;
// the policy returns the VMs to move.
//
//   LedgerOptions options{.migration_policy = NewFewestBytesPolicy()};
//
// Two policies come with the library:
//   - OldestFirst (the reference, neon-autoscaling.md section 3.4): oldest VM first, until the
//     excess is covered.
//   - FewestBytes: the set of VMs that covers the excess with the least memory to copy (live
//     migration time and network load grow with memory), found by a bounded branch-and-bound
//     search; the best set found within the bound when there are very many candidates.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "autoscale/core/resources.h"

namespace autoscale::ledger {

struct MigrationCandidate {
  std::string vm{};
  // What the VM may use, its permit (what a migration copies), and what its node reserves for
  // it (the permit's share after overcommit).
  core::Resources permit{};
  core::Resources share{};
  absl::Time created{};
};

class MigrationPolicy {
 public:
  virtual ~MigrationPolicy() = default;
  virtual std::string_view name() const = 0;
  // Indices into `candidates` of the VMs to move, so that the sum of their shares reaches
  // `excess` in both resources, or all that help when the candidates cannot reach it.
  virtual std::vector<size_t> Choose(const std::vector<MigrationCandidate>& candidates,
                                     const core::Resources& excess) const = 0;
};

std::unique_ptr<MigrationPolicy> NewOldestFirstPolicy();
std::unique_ptr<MigrationPolicy> NewFewestBytesPolicy();

// "oldest_first" or "fewest_bytes"; null for another name.
std::unique_ptr<MigrationPolicy> NewMigrationPolicy(std::string_view name);

}  // namespace autoscale::ledger
