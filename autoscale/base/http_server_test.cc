#include "autoscale/base/http_server.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace autoscale {
namespace {

HttpServer::Options Named(const char* what, int port) {
  HttpServer::Options o;
  o.what = what;
  o.port = port;
  return o;
}

TEST(HttpServerTest, ServesMetricsHealthReadinessAndPages) {
  absl::Status ready = absl::UnavailableError("ledger not recovered yet");
  HttpServer::Options o = Named("test", 0);
  o.metrics = [] { return std::string("# TYPE my_metric gauge\nmy_metric 7\n"); };
  o.ready = [&ready] { return ready; };
  o.pages.push_back({"/status", "application/json", [](const HttpServer::Params& p) {
                       auto it = p.find("since");
                       return std::string("{\"since\": \"") + (it == p.end() ? "" : it->second) +
                              "\"}";
                     }});
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(o));
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());

  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("my_metric 7\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("autoscale_build_info{version=\""), std::string::npos);
  EXPECT_NE(metrics->body.find("\nprocess_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(metrics->body.find("\nprocess_open_fds "), std::string::npos);
  EXPECT_NE(metrics->body.find("\nprocess_start_time_seconds "), std::string::npos);

  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_EQ(not_ready->body, "ledger not recovered yet\n");
  ready = absl::OkStatus();
  auto now_ready = client.Get("/readyz");
  ASSERT_TRUE(now_ready);
  EXPECT_EQ(now_ready->status, 200);

  auto status = client.Get("/status?since=12");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->body, "{\"since\": \"12\"}");
  EXPECT_EQ(status->get_header_value("Content-Type"), "application/json");
}

TEST(HttpServerTest, PortInUseIsAnErrorNamingIt) {
  absl::StatusOr<std::unique_ptr<HttpServer>> first = HttpServer::Start(Named("first", 0));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<HttpServer>> second =
      HttpServer::Start(Named("second", (*first)->port()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("second: cannot serve HTTP on 127.0.0.1:"),
            std::string::npos)
      << second.status();
}

}  // namespace
}  // namespace autoscale
