// Fuzzes log recovery: a valid log of known records is written, then damaged as the input says
// (bytes overwritten, the file cut short, bytes appended), then read back. Recovery must either
// fail with an error or return a prefix of the records written (checksums must catch every
// change), and a ledger built from it must satisfy its invariants.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "autoscale/base/units.h"
#include "autoscale/ledger/file_store.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "glog/logging.h"

namespace {

using namespace autoscale::ledger;  // NOLINT: a fuzz driver
using autoscale::kGiB;

// The records of a small ledger's life.
std::vector<LedgerRecord> Records() {
  auto store = std::make_unique<MemoryStore>();
  MemoryStore* log = store.get();
  auto ledger = *Ledger::Open({}, std::move(store));
  CHECK(ledger->RegisterNode({.name = "n0", .total = {4000, 16 * kGiB}, .watermark = 0.5}).ok());
  CHECK(ledger->RegisterNode({.name = "n1", .total = {4000, 16 * kGiB}}).ok());
  for (int i = 0; i < 3; ++i) {
    CHECK(ledger
              ->PlaceVm({.name = "vm" + std::to_string(i),
                         .bounds = {1, 8},
                         .compute_unit = {250, kGiB},
                         .initial = {500, 2 * kGiB},
                         .migratable = true},
                        "n0")
              .ok());
  }
  CHECK(ledger
            ->Request({.node = "n0",
                       .vm = "vm1",
                       .compute_unit = {250, kGiB},
                       .resources = {1500, 6 * kGiB}})
            .ok());
  const auto orders = *ledger->MigrationOrders("n0");
  CHECK(!orders.empty());
  CHECK(ledger->EndMigration(orders[0].id, orders[0].vm, true).ok());
  CHECK(ledger->ReleaseVm("vm2").ok());
  return log->Contents().records;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FLAGS_minloglevel = 3;
  static const std::vector<LedgerRecord> records = Records();
  const char* tmp = std::getenv("TEST_TMPDIR");
  static const std::string dir =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/file_store_fuzz." + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  {
    auto store = *FileStore::Open({.dir = dir, .sync = false, .reserve_bytes = 0});
    CHECK(store->Recover().ok());
    for (const LedgerRecord& r : records) store->Append(r);
  }
  const std::string log = dir + "/" + FileStore::LogName(1);
  std::string bytes;
  {
    std::ifstream f(log, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  // Damage: (offset, value) pairs overwrite; the last byte, if odd, cuts the file there.
  for (size_t i = 0; i + 2 <= size && !bytes.empty(); i += 2) {
    bytes[(data[i] * 7 + i) % bytes.size()] = static_cast<char>(data[i + 1]);
  }
  if (size % 2 == 1 && !bytes.empty()) bytes.resize(data[size - 1] * 13 % bytes.size());
  std::ofstream(log, std::ios::binary | std::ios::trunc) << bytes;

  auto store = *FileStore::Open({.dir = dir, .sync = false, .reserve_bytes = 0});
  absl::StatusOr<StoredState> state = store->Recover();
  store.reset();
  if (!state.ok()) return 0;
  CHECK_LE(state->records.size(), records.size());
  for (size_t i = 0; i < state->records.size(); ++i) {
    CHECK(state->records[i].SerializeAsString() == records[i].SerializeAsString())
        << "record " << i + 1 << " changed without the checksum noticing";
  }
  auto ledger = Ledger::Open({}, std::make_unique<MemoryStore>(*state));
  if (ledger.ok()) CHECK((*ledger)->CheckInvariants().ok());
  return 0;
}
