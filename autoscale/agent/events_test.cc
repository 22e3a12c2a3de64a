#include "autoscale/agent/events.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/api/agent_status.pb.h"
#include "glog/logging.h"
#include "gtest/gtest.h"

namespace autoscale::agent {
namespace {

// Every kind whose name says something went wrong is logged as a warning or an error, and no
// other kind is: a new kind cannot be added without its severity.
TEST(EventsTest, FailuresAreWarningsOrErrorsAndNothingElseIs) {
  const google::protobuf::EnumDescriptor* kinds = api::v1::EventKind_descriptor();
  ASSERT_GT(kinds->value_count(), 10);
  for (int i = 0; i < kinds->value_count(); ++i) {
    const std::string name = kinds->value(i)->name();
    const auto kind = static_cast<api::v1::EventKind>(kinds->value(i)->number());
    const bool failure =
        absl::StrContains(name, "FAILED") || absl::StrContains(name, "REFUSED") ||
        absl::StrContains(name, "REJECTED") || absl::StrContains(name, "UNREACHABLE") ||
        absl::StrContains(name, "UNHEALTHY") || absl::StrContains(name, "ABANDONED") ||
        absl::StrContains(name, "RESTARTING") || absl::StrContains(name, "LOST");
    EXPECT_EQ(SeverityOf(kind) != Severity::kInfo, failure) << name;
  }
}

// Captures the severity of each message glog is given while it is installed.
class SeveritySink : public google::LogSink {
 public:
  SeveritySink() { google::AddLogSink(this); }
  ~SeveritySink() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity severity, const char*, const char*, int,
            const google::LogMessageTime&, const char* message, size_t length) override {
    absl::MutexLock lock(&mu_);
    seen_.emplace_back(severity, std::string(message, length));
  }
  std::vector<std::pair<google::LogSeverity, std::string>> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<google::LogSeverity, std::string>> seen_ ABSL_GUARDED_BY(mu_);
};

TEST(EventsTest, EachEventIsLoggedAtItsSeverity) {
  SeveritySink sink;
  EventLog log;
  log.Add(absl::UnixEpoch(), "vm1", api::v1::EVENT_KIND_RESIZED, "resized");
  log.Add(absl::UnixEpoch(), "vm1", api::v1::EVENT_KIND_RESIZE_FAILED, "resize failed");
  log.Add(absl::UnixEpoch(), "vm1", api::v1::EVENT_KIND_MIGRATION_FAILED, "migration failed");
  const auto seen = sink.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(google::GLOG_INFO, std::string("vm1: resized")));
  EXPECT_EQ(seen[1], std::make_pair(google::GLOG_WARNING, std::string("vm1: resize failed")));
  EXPECT_EQ(seen[2], std::make_pair(google::GLOG_ERROR, std::string("vm1: migration failed")));
}

TEST(EventsTest, TheLogKeepsTheLatestEventsInOrder) {
  EventLog log(/*capacity=*/2);
  log.Add(absl::UnixEpoch(), "vm1", api::v1::EVENT_KIND_RESIZED, "one");
  log.Add(absl::UnixEpoch(), "vm1", api::v1::EVENT_KIND_RESIZE_FAILED, "two");
  log.Add(absl::UnixEpoch(), "", api::v1::EVENT_KIND_NODE_REGISTERED, "three");
  const std::vector<Event> all = log.Since(0);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].text, "two");
  EXPECT_EQ(all[1].text, "three");
  EXPECT_EQ(log.Since(all[0].seq).size(), 1u);
}

}  // namespace
}  // namespace autoscale::agent
