// The HTTP server of every daemon: /metrics (the daemon's Prometheus page followed by the process
// and build-info metrics), /healthz (200 while the process serves HTTP at all), /readyz (200 when
// the daemon's readiness check passes, 503 with the reason otherwise), and the daemon's own pages.
//
//   HttpServer::Options o;
//   o.what = "agent";
//   o.port = 9101;
//   o.metrics = [&] { return agent.MetricsText(); };
//   o.ready = [&] { return agent.Ready(); };
//   o.pages.push_back({"/status", "application/json", [&](const HttpServer::Params& p) { ... }});
//   ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> http, HttpServer::Start(std::move(o)));
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace autoscale {

class HttpServer {
 public:
  using Params = std::multimap<std::string, std::string>;  // the query string
  struct Page {
    std::string path;
    std::string content_type;
    std::function<std::string(const Params&)> render;
  };
  struct Options {
    std::string what;  // names the daemon in logs and errors
    std::string host = "127.0.0.1";
    int port = 0;                          // 0 picks a free port
    std::function<std::string()> metrics;  // the daemon's own metrics (may be empty)
    std::function<absl::Status()> ready;   // empty: ready while serving
    std::vector<Page> pages;
  };

  // Binds host:port and serves on a thread of its own until destroyed.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Options options);
  virtual ~HttpServer() = default;

  // The bound port (the chosen one when Options::port was 0).
  virtual int port() const = 0;
};

}  // namespace autoscale
