// The agent's side of the agent<->monitor protocol: one stream to a VM's monitor, with calls
// that wait for their reply (matched by id) and callbacks for what the monitor sends on its own
// (metrics, upscale requests, the end of the stream).
//
//   MonitorClient::Callbacks callbacks{
//       .on_metrics = [&](const api::Metrics& m) { ... },
//       .on_upscale_request = [&](const api::UpscaleRequest& r) { ... },
//       .on_closed = [&](const absl::Status& why) { ... },
//   };
//   ASSIGN_OR_RETURN(auto client, MonitorClient::Connect("127.0.0.1:10301", callbacks,
//                                                        absl::Seconds(4)));
//   ASSIGN_OR_RETURN(api::DownscaleResult r, client->RequestDownscale(target, absl::Seconds(5)));
//
// Callbacks run on the client's reader thread; they must not call back into the client's
// blocking calls.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/api/monitor.pb.h"

namespace autoscale::rpc {

class MonitorClient {
 public:
  struct Callbacks {
    std::function<void(const api::Metrics&)> on_metrics;
    std::function<void(const api::UpscaleRequest&)> on_upscale_request;
    // The stream ended (the monitor went away, replaced us, or the client was destroyed).
    std::function<void(const absl::Status&)> on_closed;
  };

  // Connects ("host:port" or "unix:/path") and negotiates the protocol version, within
  // `timeout`.
  static absl::StatusOr<std::unique_ptr<MonitorClient>> Connect(const std::string& address,
                                                                Callbacks callbacks,
                                                                absl::Duration timeout);
  virtual ~MonitorClient() = default;

  // Asks whether the VM may shrink to `target`. An error (timeout, closed stream, the monitor's
  // InternalError) means the request failed; a result with ok=false is a denial.
  virtual absl::StatusOr<api::DownscaleResult> RequestDownscale(const api::Resources& target,
                                                                absl::Duration timeout) = 0;
  // Tells the monitor the VM now has `granted`; OK once it confirmed.
  virtual absl::Status NotifyUpscale(const api::Resources& granted, absl::Duration timeout) = 0;
  virtual absl::Status HealthCheck(absl::Duration timeout) = 0;
  // False once the stream ended.
  virtual bool connected() const = 0;
};

}  // namespace autoscale::rpc
