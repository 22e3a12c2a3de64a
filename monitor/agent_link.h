// AgentLink: the monitor's side of the agent<->monitor protocol (rpc::monitor::MonitorService):
// downscale checks and upscale notifications answered by a Monitor, metrics read and pushed to
// the agent every `metrics_interval`, and upscale requests sent the moment the monitor asks.
// Any transport serves it (rpc::monitor::StartGrpcServer, rpc::monitor::InProcessConnector).
//
// One agent at a time: a new connection that is admitted ends the previous one (as in the
// reference: an agent that restarted, or the target's agent after a migration, takes over). Who
// is admitted:
//   - with the VM's agent token (AgentLinkOptions::agent_token, which the guest read from fw_cfg:
//     rpc/monitor/agent_token.h), only an agent whose Hello carries it: the agent that launched
//     the VM, or the migration target's, which received it with the VM. Compared in constant
//     time. Without a token configured, the binding is not enforced (a warning says so, once).
//   - with mutual TLS (require_agent_identity), only a node's agent of the trust domain
//     (spiffe://<td>/node/<name>); another certificate the CA signed (a VM's, the admin's) is
//     refused.
// A refused agent gets PERMISSION_DENIED and the live agent keeps its session: a guest's own
// processes and a host user who reaches the forwarded port hold neither the token (only root
// reads the host's 0600 file; the guest's sysfs file is root's) nor a node certificate.
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
  // The VM's agent token; empty: none (any agent the rule above admits is admitted).
  std::string agent_token{};
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

  absl::Status Admit(const std::string& identity, const std::string& token) override;
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
