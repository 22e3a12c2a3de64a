#include "autoscale/base/status_macros.h"

#include <string>

#include "gtest/gtest.h"

namespace autoscale {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::Status Check(int x) {
  if (x < 0) return absl::OutOfRangeError("negative");
  return absl::OkStatus();
}

absl::StatusOr<int> Quarter(int x) {
  RETURN_IF_ERROR(Check(x));
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckViaStatusOr(int x) {
  RETURN_IF_ERROR(Half(x));
  return absl::OkStatus();
}

TEST(StatusMacros, PassesValuesThrough) {
  auto q = Quarter(8);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 2);
}

TEST(StatusMacros, ReturnsTheFirstError) {
  EXPECT_EQ(Quarter(-4).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Quarter(6).status(), absl::InvalidArgumentError("odd"));
  EXPECT_EQ(CheckViaStatusOr(3), absl::InvalidArgumentError("odd"));
  EXPECT_TRUE(CheckViaStatusOr(4).ok());
}

TEST(StatusMacros, AnnotateKeepsCodeAndAddsContext) {
  absl::Status s = Annotate(absl::NotFoundError("no such file"), "reading /x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "reading /x: no such file");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "anything").ok());
}

}  // namespace
}  // namespace autoscale
