// InProcessConnector: MonitorClients connected to a MonitorService in this process, with the
// checks and answers of the gRPC transport (internal/protocol.h is shared) and no network. For
// the simulator and tests; transport tests hold it to the gRPC client's answers.
//
//   monitor::AgentLink link(monitor, metrics, {});
//   rpc::monitor::InProcessConnector connector(link);
//   ASSIGN_OR_RETURN(auto client, connector.Connect("vm1", {}, callbacks, absl::Seconds(1)));
//
// As over gRPC, callbacks run on the client's own thread, in the order the monitor sent, and
// on_closed ends them (the monitor closed the session, or the client was destroyed). Calls are
// answered on the caller's thread; their timeout is not needed.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/rpc/monitor/monitor.h"

namespace autoscale::rpc::monitor {

class InProcessConnector {
 public:
  // `monitor` must outlive the connector and its clients.
  explicit InProcessConnector(MonitorService& monitor) : monitor_(monitor) {}

  // Opens a session: the Hello (with `binding.token`), then MonitorService::Connect. `address`
  // names the monitor in errors ("monitor at <address>: ..."), as the gRPC client's address does.
  // Has the signature of ConnectGrpc, so it can stand where a connector function is expected.
  // There are no certificates in process: binding.vm is not checked, and the monitor's Admit
  // sees no identity.
  absl::StatusOr<std::unique_ptr<MonitorClient>> Connect(const std::string& address,
                                                         const AgentBinding& binding,
                                                         MonitorClient::Callbacks callbacks,
                                                         absl::Duration timeout);

 private:
  MonitorService& monitor_;
};

}  // namespace autoscale::rpc::monitor
