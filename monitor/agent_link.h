// AgentLink: the monitor's side of the agent<->monitor protocol (rpc::monitor::MonitorService):
// downscale checks and upscale notifications answered by a Monitor, metrics read and pushed to
// the agent every `metrics_interval`, and upscale requests sent the moment the monitor asks.
// Any transport serves it (rpc::monitor::StartGrpcServer, rpc::monitor::InProcessConnector).
//
// One agent at a time: a new connection that is admitted ends the previous one (as in the
// reference: an agent that restarted, or the target's agent after a migration, takes over). Who
// is admitted (AgentLinkOptions::require_agent_identity): with mutual TLS, only a node's agent of
// the trust domain (spiffe://<td>/node/<name>); another certificate the CA signed (a VM's, the
// admin's) is refused with PERMISSION_DENIED and the live agent keeps its session. A guest's own
// processes have no node certificate, and a host user who reaches the forwarded port has none.
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
  // Admit only agents whose certificate names a node's agent: spiffe://<trust_domain>/node/<name>
  // (any trust domain the CA signs when `trust_domain` is empty). For a monitor serving mutual
  // TLS; off, whoever connects is admitted (plaintext, local development).
  bool require_agent_identity = false;
  std::string trust_domain{};
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

  absl::Status Admit(const std::string& identity) override;
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
