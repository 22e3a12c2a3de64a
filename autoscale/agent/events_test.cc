#include "autoscale/agent/events.h"

#include <string>

#include "absl/strings/match.h"
#include "autoscale/api/agent_status.pb.h"
#include "gtest/gtest.h"

namespace autoscale::agent {
namespace {

// Every kind whose name says something went wrong is logged as a warning or an error, and no
// other kind is: a new kind cannot be added without its severity.
TEST(EventsTest, FailuresAreWarningsOrErrorsAndNothingElseIs) {
  const google::protobuf::EnumDescriptor* kinds = api::EventKind_descriptor();
  ASSERT_GT(kinds->value_count(), 10);
  for (int i = 0; i < kinds->value_count(); ++i) {
    const std::string name = kinds->value(i)->name();
    const auto kind = static_cast<api::EventKind>(kinds->value(i)->number());
    const bool failure =
        absl::StrContains(name, "FAILED") || absl::StrContains(name, "REFUSED") ||
        absl::StrContains(name, "REJECTED") || absl::StrContains(name, "UNREACHABLE") ||
        absl::StrContains(name, "UNHEALTHY") || absl::StrContains(name, "ABANDONED") ||
        absl::StrContains(name, "RESTARTING") || absl::StrContains(name, "LOST");
    EXPECT_EQ(SeverityOf(kind) != Severity::kInfo, failure) << name;
  }
}

TEST(EventsTest, TheLogKeepsTheLatestEventsInOrder) {
  EventLog log(/*capacity=*/2);
  log.Add(absl::UnixEpoch(), "vm1", api::EVENT_KIND_RESIZED, "one");
  log.Add(absl::UnixEpoch(), "vm1", api::EVENT_KIND_RESIZE_FAILED, "two");
  log.Add(absl::UnixEpoch(), "", api::EVENT_KIND_NODE_REGISTERED, "three");
  const std::vector<Event> all = log.Since(0);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].text, "two");
  EXPECT_EQ(all[1].text, "three");
  EXPECT_EQ(log.Since(all[0].seq).size(), 1u);
}

}  // namespace
}  // namespace autoscale::agent
