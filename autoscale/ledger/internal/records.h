// Records and validation: the ledger's changes as values (one struct per kind of change), their
// conversion to and from the log's protos, and the checks on what callers and the log hand the
// ledger. Private to the ledger library.
//
// A change is what an operation decided, in full: applying it (Ledger::Apply, apply.cc) is the
// only way the ledger's state changes, and its proto (ToRecord) is what the log keeps, so that
// replaying the log (FromRecord, then the same Apply) rebuilds the same state.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/ledger.pb.h"

namespace autoscale::ledger::internal {

// The changes. Names are views: a change lives only while it is applied and logged, and what it
// names (the request, the record, the state) outlives it.
namespace change {

// A node registered, or its settings changed (total, watermark, address, cordon, drain).
struct NodeRegistered {
  absl::string_view name;
  Resources total;
  // (0, 1]: the ledger's default already applied.
  double watermark = 0;
  absl::string_view agent_address;
  bool cordoned = false;
  // Implies cordoned.
  bool draining = false;
};

// A node leaves; forced: with what it still holds.
struct NodeRemoved {
  absl::string_view node;
  bool forced = false;
};

struct VmBoundsChanged {
  absl::string_view vm;
  Bounds bounds;
};

// A new VM: its whole state (without a migration).
struct VmPlaced {
  absl::string_view name;
  absl::string_view node;
  VmState vm;
};

// A VM's new permit and request (a grant, a decrease, an adopted permit, a new request).
struct VmResized {
  absl::string_view node;
  absl::string_view vm;
  Resources permit;
  Resources requested;
};

struct VmReleased {
  absl::string_view vm;
};

// A VM starts moving: it is reserved on the target too until the migration ends.
struct MigrationStarted {
  MigrationOrder order;
};

struct MigrationEnded {
  uint64_t id = 0;
  absl::string_view vm;
  bool succeeded = false;
};

}  // namespace change

// The log's form of a change.
LedgerRecord ToRecord(const change::NodeRegistered& c);
LedgerRecord ToRecord(const change::NodeRemoved& c);
LedgerRecord ToRecord(const change::VmBoundsChanged& c);
LedgerRecord ToRecord(const change::VmPlaced& c);
LedgerRecord ToRecord(const change::VmResized& c);
LedgerRecord ToRecord(const change::VmReleased& c);
LedgerRecord ToRecord(const change::MigrationStarted& c);
LedgerRecord ToRecord(const change::MigrationEnded& c);

// A change read back from the log, with what the record alone can tell checked (names present,
// amounts in range, a VM's spec valid); what it says about the state (that the VM exists, on that
// node) is checked by recovery. Errors are DATA_LOSS. The change's names point into the record.
absl::StatusOr<change::NodeRegistered> FromRecord(const NodeRecord& r);
absl::StatusOr<change::NodeRemoved> FromRecord(const NodeRemoved& r);
absl::StatusOr<change::VmBoundsChanged> FromRecord(const VmBoundsChanged& r);
// A snapshot's VM that migrates: pass it without its migration (a MigrationRecord follows).
absl::StatusOr<change::VmPlaced> FromRecord(const VmRecord& r);
absl::StatusOr<change::VmResized> FromRecord(const VmResized& r);
absl::StatusOr<change::MigrationStarted> FromRecord(const MigrationRecord& r);
absl::StatusOr<change::MigrationEnded> FromRecord(const MigrationEnded& r);

// The state a snapshot keeps, in the records' form.
NodeRecord NodeRecordOf(const Node& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n.mu);
VmRecord VmRecordOf(absl::string_view name, absl::string_view node, const VmState& vm);

// An amount of both resources: not negative, at most kMaxAmount. `what` names it in the error.
absl::Status CheckAmount(const Resources& r, absl::string_view what);
absl::Status CheckComputeUnit(const Resources& cu);
absl::Status CheckBounds(const Bounds& b, const Resources& cu);
// A VM's size: whole compute units within its bounds, per resource.
absl::Status CheckSize(const Resources& r, const Resources& cu, const Bounds& b,
                       absl::string_view what);
// A permit: whole compute units (within bounds only once its agent asked after a bounds change).
absl::Status CheckWholeUnits(const Resources& r, const Resources& cu, absl::string_view what);
// A node name, VM name or address: at most kMaxNameBytes (and not empty, unless `may_be_empty`).
absl::Status CheckName(absl::string_view value, absl::string_view what, bool may_be_empty = false);
absl::Status CheckOvercommit(const Overcommit& o);
absl::Status CheckPlaceVmRequest(const PlaceVmRequest& s);

// DATA_LOSS naming what in the store is wrong.
absl::Status Corrupt(absl::string_view what);

}  // namespace autoscale::ledger::internal
