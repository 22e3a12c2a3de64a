#include "lfc/resizer.h"

#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace autoscale::lfc {
namespace {

TEST(NoopResizerTest, AcceptsEverySize) {
  std::unique_ptr<LfcResizer> resizer = std::make_unique<NoopResizer>();
  EXPECT_TRUE(resizer->SetSizeBytes(0).ok());
  EXPECT_TRUE(resizer->SetSizeBytes(UINT64_MAX).ok());
}

TEST(CallbackResizerTest, ForwardsSizesAndStatus) {
  std::vector<uint64_t> seen;
  CallbackResizer resizer([&](uint64_t bytes) {
    seen.push_back(bytes);
    return bytes > 100 ? absl::ResourceExhaustedError("too big") : absl::OkStatus();
  });
  EXPECT_TRUE(resizer.SetSizeBytes(42).ok());
  const absl::Status status = resizer.SetSizeBytes(1000);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "too big");
  EXPECT_EQ(seen, (std::vector<uint64_t>{42, 1000}));
}

TEST(CallbackResizerDeathTest, EmptyCallbackIsAProgrammerError) {
  EXPECT_DEATH(CallbackResizer(nullptr), "needs a callback");
}

}  // namespace
}  // namespace autoscale::lfc
