// Status plumbing shared by every library: early-return macros (this Abseil has none) and a way
// to add context to an error without losing its code.
//
//   absl::StatusOr<Config> LoadConfig(const std::string& path) {
//     ASSIGN_OR_RETURN(std::string text, ReadFile(path));
//     RETURN_IF_ERROR(Validate(text));
//     ...
//   }
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace autoscale {

// Returns `status` with "<context>: " in front of its message; the code is kept. OK stays OK.
absl::Status Annotate(const absl::Status& status, std::string_view context);

namespace internal_status {
inline absl::Status AsStatus(absl::Status s) { return s; }
template <typename T>
absl::Status AsStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace internal_status

}  // namespace autoscale

#define AUTOSCALE_STATUS_CONCAT_INNER_(a, b) a##b
#define AUTOSCALE_STATUS_CONCAT_(a, b) AUTOSCALE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status or absl::StatusOr) and returns its status if not OK.
#define RETURN_IF_ERROR(expr)                                                        \
  do {                                                                               \
    absl::Status _autoscale_status = ::autoscale::internal_status::AsStatus((expr)); \
    if (!_autoscale_status.ok()) return _autoscale_status;                           \
  } while (0)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status if not OK, else moves the value
// into `lhs`, which may be a declaration: ASSIGN_OR_RETURN(auto x, F());
#define ASSIGN_OR_RETURN(lhs, expr)                                                               \
  AUTOSCALE_ASSIGN_OR_RETURN_IMPL_(AUTOSCALE_STATUS_CONCAT_(_autoscale_statusor_, __LINE__), lhs, \
                                   expr)

#define AUTOSCALE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()
