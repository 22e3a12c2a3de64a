// ledgerctl: looks at (and, when told, repairs) a stopped scheduler's ledger directory. Flags and
// wiring; the logic is autoscale/ledger/tool.h.
//
//   ledgerctl --data_dir=/var/lib/scheduler dump            # snapshot and log as JSON lines
//   ledgerctl --data_dir=/var/lib/scheduler verify          # exit 1 when something is wrong
//   ledgerctl --data_dir=/var/lib/scheduler truncate --at=50  # drop record 50 and every later one
//
// Exit codes: 0 done (verify: nothing wrong), 1 a problem found or an error, 2 a usage error.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/init.h"
#include "autoscale/ledger/file_system.h"
#include "autoscale/ledger/tool.h"

ABSL_FLAG(std::string, data_dir, "", "The scheduler's data directory (--data_dir of scheduler)");
ABSL_FLAG(uint64_t, at, 0,
          "truncate: the first record to drop; it and every later one are cut off the log");

namespace {

constexpr char kUsage[] =
    "Usage: ledgerctl --data_dir=DIR COMMAND\n"
    "Commands: dump (snapshot and log as JSON lines), verify (checksums, sequence, replay, "
    "invariants), truncate --at=SEQ (drop record SEQ and every later one)";

int Run(const std::string& command) {
  using namespace autoscale::ledger;  // NOLINT: a command's wiring
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  FileSystem& fs = FileSystem::Default();
  if (command == "dump") {
    absl::Status s = DumpLedger(fs, dir, std::cout);
    if (!s.ok()) std::cerr << "ledgerctl: " << s << "\n";
    return s.ok() ? 0 : 1;
  }
  if (command == "verify") {
    absl::StatusOr<VerifyReport> r = VerifyLedger(fs, dir);
    if (!r.ok()) {
      std::cerr << "ledgerctl: " << r.status() << "\n";
      return 1;
    }
    std::cout << dir << ": "
              << (r->snapshot_file.empty() ? std::string("no snapshot")
                                           : "snapshot " + r->snapshot_file + " (records up to " +
                                                 std::to_string(r->snapshot_seq) + ")")
              << ", " << r->records << " log records after it; replays to record " << r->last_seq
              << ": " << r->nodes << " nodes, " << r->vms << " VMs\n";
    for (const std::string& n : r->notes) std::cout << "note: " << n << "\n";
    for (const std::string& p : r->problems) std::cout << "PROBLEM: " << p << "\n";
    std::cout << (r->problems.empty() ? "OK\n" : "DAMAGED\n");
    return r->problems.empty() ? 0 : 1;
  }
  if (command == "truncate") {
    if (absl::GetFlag(FLAGS_at) == 0) {
      std::cerr << "ledgerctl: truncate needs --at=SEQ (the first record to drop)\n";
      return 2;
    }
    absl::StatusOr<TruncateReport> r = TruncateLedger(fs, dir, absl::GetFlag(FLAGS_at));
    if (!r.ok()) {
      std::cerr << "ledgerctl: " << r.status() << "\n";
      return 1;
    }
    std::cout << r->reason << "\n";
    if (!r->removed_files.empty()) {
      std::cout << "removed: " << absl::StrJoin(r->removed_files, ", ") << "\n";
    }
    return 0;
  }
  std::cerr << "ledgerctl: unknown command \"" << command << "\"\n" << kUsage << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = autoscale::InitProgram(argc, argv, kUsage);
  if (args.size() != 2 || absl::GetFlag(FLAGS_data_dir).empty()) {
    std::cerr << kUsage << "\n";
    return 2;
  }
  return Run(args[1]);
}
