// The monitor's side of the agent<->monitor protocol (autoscale/api/monitor.proto): a gRPC
// service with one bidirectional stream per agent. It answers health checks, downscale requests
// and upscale notifications through a monitor::Monitor, streams metrics to the agent, and sends
// upscale requests the moment the monitor asks for them.
//
// One agent at a time: a new connection ends the previous one (as in the reference).
//
//   MonitorService service(runner->monitor(), metrics_reader, {});
//   grpc::ServerBuilder builder;
//   builder.AddListeningPort("127.0.0.1:10301", grpc::InsecureServerCredentials());
//   builder.RegisterService(&service);
//   ...
//   service.SendUpscaleRequest(usage, threshold);  // from the Runner's upscale hook
#pragma once

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/api/monitor.grpc.pb.h"
#include "monitor/metrics.h"
#include "monitor/monitor.h"

namespace autoscale::rpc {

struct MonitorServiceOptions {
  // How often metrics are pushed to the connected agent.
  absl::Duration metrics_interval = absl::Seconds(1);
};

class MonitorService final : public api::Monitor::Service {
 public:
  MonitorService(monitor::Monitor& monitor, const monitor::MetricsReader& metrics,
                 MonitorServiceOptions options);
  ~MonitorService() override;

  // Sends an upscale request to the connected agent. False if no agent is connected.
  bool SendUpscaleRequest(int64_t usage_bytes, int64_t threshold_bytes);
  // Ends the current agent's stream (before shutting the server down).
  void Disconnect();
  bool connected() const;

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<api::MonitorMessage, api::AgentMessage>* stream) override;

 private:
  struct Session;
  void Handle(Session& session, const api::AgentMessage& message);

  monitor::Monitor& monitor_;
  const monitor::MetricsReader& metrics_;
  const MonitorServiceOptions options_;
  mutable absl::Mutex mu_;
  // The connected agent's stream, if any.
  std::shared_ptr<Session> session_ ABSL_GUARDED_BY(mu_);
};

}  // namespace autoscale::rpc
