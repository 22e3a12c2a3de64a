// Record conversion and validation: the checks on what callers and the log hand the ledger, and
// the conversion between the ledger's state and the records it logs. Private to the ledger
// library.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autoscale/ledger/internal/node.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/ledger.pb.h"

namespace autoscale::ledger::internal {

// An amount of both resources: not negative, at most kMaxAmount. `what` names it in the error.
absl::Status CheckAmount(const Resources& r, absl::string_view what);
absl::Status CheckComputeUnit(const Resources& cu);
absl::Status CheckBounds(const Bounds& b, const Resources& cu);
// A VM's size: whole compute units within its bounds, per resource.
absl::Status CheckSize(const Resources& r, const Resources& cu, const Bounds& b,
                       absl::string_view what);
absl::Status CheckOvercommit(const Overcommit& o);
absl::Status CheckPlaceVmRequest(const PlaceVmRequest& s);

// DATA_LOSS naming what in the store is wrong.
absl::Status Corrupt(absl::string_view what);

// An amount read from the log, checked like CheckAmount.
absl::StatusOr<Resources> AmountFromProto(const api::Resources& p, absl::string_view what);

MigrationRecord MigrationRecordOf(const MigrationOrder& o);
NodeRecord NodeRecordOf(const Node& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(n.mu);
// A VM as a snapshot holds it.
VmRecord VmRecordOf(const std::string& name, const std::string& node, const Vm& vm);

}  // namespace autoscale::ledger::internal
