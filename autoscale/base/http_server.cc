#include "autoscale/base/http_server.h"

#include <atomic>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/prometheus.h"
#include "glog/logging.h"
#include "httplib.h"

namespace autoscale {
namespace {

class HttplibServer final : public HttpServer {
 public:
  explicit HttplibServer(HttpServer::Options options) : options_(std::move(options)) {}
  ~HttplibServer() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Start() {
    // httplib's default also sets SO_REUSEPORT: a second daemon on the same port would bind
    // too and share the traffic. SO_REUSEADDR alone lets a restart bind at once.
    server_.set_socket_options([](socket_t sock) {
      const int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::string page = options_.metrics ? options_.metrics() : "";
      res.set_content(page + ProcessMetricsText(), "text/plain; version=0.0.4");
    });
    server_.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    server_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      const absl::Status ready = options_.ready ? options_.ready() : absl::OkStatus();
      res.status = ready.ok() ? 200 : 503;
      res.set_content(ready.ok() ? "ok\n" : absl::StrCat(ready.message(), "\n"), "text/plain");
    });
    for (const Page& page : options_.pages) {
      server_.Get(page.path, [&page](const httplib::Request& req, httplib::Response& res) {
        HttpServer::Params params(req.params.begin(), req.params.end());
        res.set_content(page.render(params), page.content_type);
      });
    }
    const char* host = options_.host.c_str();
    port_ = options_.port == 0 ? server_.bind_to_any_port(host)
                               : (server_.bind_to_port(host, options_.port) ? options_.port : -1);
    if (port_ <= 0) {
      return absl::UnavailableError(absl::StrCat(options_.what, ": cannot serve HTTP on ",
                                                 options_.host, ":", options_.port,
                                                 " (address in use?)"));
    }
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      listen_returned_ = true;
    });
    // httplib's stop() does nothing until the loop runs: a server destroyed right after its start
    // would otherwise leave the thread listening and the destructor waiting for it forever.
    while (!server_.is_running() && !listen_returned_) absl::SleepFor(absl::Milliseconds(1));
    LOG(INFO) << options_.what << ": http://" << options_.host << ":" << port_
              << " serves /metrics, /healthz, /readyz"
              << (options_.pages.empty() ? "" : " and its own pages");
    return absl::OkStatus();
  }

  int port() const override { return port_; }

 private:
  const HttpServer::Options options_;
  httplib::Server server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_ = false;
  int port_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Options options) {
  auto server = std::make_unique<HttplibServer>(std::move(options));
  if (absl::Status s = server->Start(); !s.ok()) return s;
  return server;
}

}  // namespace autoscale
