// AgentLink: the monitor's side of the agent<->monitor protocol (rpc::monitor::MonitorService):
// downscale checks and upscale notifications answered by a Monitor, metrics read and pushed to
// the agent every `metrics_interval`, and upscale requests sent the moment the monitor asks.
// Any transport serves it (rpc::monitor::StartGrpcServer, rpc::monitor::InProcessConnector).
//
// One agent at a time: a new connection ends the previous one (as in the reference).
//
//   AgentLink link(runner->monitor(), metrics_reader, {});
//   ASSIGN_OR_RETURN(auto server, rpc::monitor::StartGrpcServer(link, "127.0.0.1:10301"));
//   ...
//   link.SendUpscaleRequest(usage, threshold);  // from the Runner's upscale hook
//   ...
//   link.Disconnect();                           // before the server shuts down
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/rpc/monitor/monitor.h"
#include "monitor/metrics.h"
#include "monitor/monitor.h"

namespace autoscale::monitor {

struct AgentLinkOptions {
  // How often metrics are pushed to the connected agent.
  absl::Duration metrics_interval = absl::Seconds(1);
};

class AgentLink final : public rpc::monitor::MonitorService {
 public:
  // `monitor` and `metrics` must outlive the link; the link must outlive the transports that
  // serve it.
  AgentLink(Monitor& monitor, const MetricsReader& metrics, AgentLinkOptions options);
  ~AgentLink() override;

  // Queues an upscale request for the connected agent's session, which sends it from its own
  // thread: this never blocks on the network (it is called on the monitor's event loop). False
  // if no agent is connected.
  bool SendUpscaleRequest(int64_t usage_bytes, int64_t threshold_bytes);
  // Ends the current agent's session (before shutting the server down).
  void Disconnect();
  bool connected() const;

  std::unique_ptr<rpc::monitor::AgentSession> Connect(
      std::shared_ptr<rpc::monitor::AgentStream> agent, const std::string& peer) override;

 private:
  class Session;
  // `session` ended: it is no longer the current one.
  void Ended(const Session* session);

  Monitor& monitor_;
  const MetricsReader& metrics_;
  const AgentLinkOptions options_;
  // Guards which session is the current one.
  mutable absl::Mutex mu_;
  Session* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<rpc::monitor::AgentStream> agent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace autoscale::monitor
