#include "autoscale/ledger/migration_policy.h"

#include <string>
#include <vector>

#include "autoscale/base/units.h"
#include "gtest/gtest.h"

namespace autoscale::ledger {
namespace {

using core::Resources;

MigrationCandidate Vm(std::string name, int age_s, int64_t cpu, int64_t gib) {
  return {std::move(name), {cpu, gib * kGiB}, {cpu, gib * kGiB}, absl::FromUnixSeconds(age_s)};
}

std::vector<std::string> Names(const std::vector<MigrationCandidate>& c,
                               const std::vector<size_t>& chosen) {
  std::vector<std::string> out;
  for (size_t i : chosen) out.push_back(c[i].vm);
  return out;
}

TEST(OldestFirstTest, TakesTheOldestUntilTheExcessIsCovered) {
  const std::vector<MigrationCandidate> c = {Vm("c", 30, 500, 2), Vm("a", 10, 500, 2),
                                             Vm("b", 20, 500, 2)};
  auto p = NewOldestFirstPolicy();
  EXPECT_EQ(Names(c, p->Choose(c, {600, 3 * kGiB})), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Names(c, p->Choose(c, {0, kGiB})), (std::vector<std::string>{"a"}));
  // Not enough: everything.
  EXPECT_EQ(Names(c, p->Choose(c, {0, 100 * kGiB})).size(), 3u);
  EXPECT_TRUE(p->Choose(c, {}).empty());
}

TEST(FewestBytesTest, FindsTheSmallestCover) {
  const std::vector<MigrationCandidate> c = {Vm("old", 1, 1000, 8), Vm("mid", 2, 1000, 4),
                                             Vm("a", 3, 1000, 3), Vm("b", 4, 1000, 2)};
  auto p = NewFewestBytesPolicy();
  // 5 GiB: a + b (5 GiB) beats old (8) and mid + b (6).
  EXPECT_EQ(Names(c, p->Choose(c, {0, 5 * kGiB})), (std::vector<std::string>{"a", "b"}));
  // 4 GiB: mid alone (4) ties with nothing smaller.
  EXPECT_EQ(Names(c, p->Choose(c, {0, 4 * kGiB})), (std::vector<std::string>{"mid"}));
  // CPU counts too: 3000m needs three VMs; the three smallest in memory.
  EXPECT_EQ(Names(c, p->Choose(c, {3000, 0})), (std::vector<std::string>{"mid", "a", "b"}));
  EXPECT_TRUE(p->Choose(c, {}).empty());
}

TEST(FewestBytesTest, NeverWorseThanOldestFirst) {
  std::vector<MigrationCandidate> c;
  for (int i = 0; i < 40; ++i)
    c.push_back(Vm("vm" + std::to_string(i), i, 250 * (1 + i % 3), 1 + (i * 7) % 9));
  auto bytes = [&](const std::vector<size_t>& chosen) {
    int64_t b = 0;
    for (size_t i : chosen) b += c[i].permit.memory_bytes;
    return b;
  };
  for (int64_t gib = 1; gib < 60; gib += 7) {
    const Resources excess{1000, gib * kGiB};
    const std::vector<size_t> fewest = NewFewestBytesPolicy()->Choose(c, excess);
    Resources moved;
    for (size_t i : fewest) moved = moved + c[i].share;
    EXPECT_TRUE(excess.FitsIn(moved)) << gib;
    EXPECT_LE(bytes(fewest), bytes(NewOldestFirstPolicy()->Choose(c, excess))) << gib;
  }
}

TEST(MigrationPolicyTest, ByName) {
  EXPECT_EQ(NewMigrationPolicy("oldest_first")->name(), "oldest_first");
  EXPECT_EQ(NewMigrationPolicy("fewest_bytes")->name(), "fewest_bytes");
  EXPECT_EQ(NewMigrationPolicy("random"), nullptr);
}

}  // namespace
}  // namespace autoscale::ledger
