// EtcdClient: a small client of etcd's v3 API over gRPC (rpc.proto: the messages this project
// needs, written from etcd's published API reference), for the ledger's EtcdStore and the
// scheduler's leader election. This header includes no gRPC.
//
// It holds one channel per endpoint and sends each call to the endpoint that answered last; a
// call that finds it unreachable (UNAVAILABLE) or slow (DEADLINE_EXCEEDED) moves on to the next,
// trying each endpoint once. Every call has a deadline (`timeout`): without one, a request to a
// member that lost quorum hangs until the server's own 7 s timeout. A call that timed out may still
// be applied later, and a call may be sent twice (to two endpoints): make writes idempotent with a
// compare (Txn), as EtcdStore and the election do.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<EtcdClient> etcd,
//                    EtcdClient::Connect({.endpoints = {"10.0.0.1:2379", "10.0.0.2:2379"}}));
//   etcdserverpb::RangeRequest get;
//   get.set_key("/autoscale/ledger/snapshot");
//   ASSIGN_OR_RETURN(etcdserverpb::RangeResponse r, etcd->Range(get));
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/ledger/etcd/rpc.pb.h"

namespace autoscale::ledger::etcd {

struct EtcdOptions {
  // "host:port" of each member's client URL (an "http://" or "https://" in front is dropped).
  std::vector<std::string> endpoints{};
  // TLS: the CA that signed the members' certificates (PEM file). Empty: plaintext. With it,
  // `cert_file` and `key_file` (PEM) are this client's certificate and key, for members that
  // require client certificates (etcd --client-cert-auth); both or neither.
  std::string ca_file{};
  std::string cert_file{};
  std::string key_file{};
  // Each attempt of a call waits at most this long.
  absl::Duration timeout = absl::Seconds(1);
};

// "a:2379,b:2379" (commas, optional http:// or https://) -> {"a:2379", "b:2379"}. An empty list or
// an empty entry is an error.
absl::StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list);

// The end of the range of keys that start with `prefix`: `prefix` with its last byte + 1.
std::string PrefixEnd(std::string_view prefix);

// A running watch (EtcdClient::Watch). Destroying it cancels the stream and waits for its thread;
// not from inside its own callbacks.
class EtcdWatch {
 public:
  virtual ~EtcdWatch() = default;
};

class EtcdClient {
 public:
  // Reads the TLS files and makes the channels; does not wait for any endpoint to answer.
  static absl::StatusOr<std::shared_ptr<EtcdClient>> Connect(EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);
  absl::StatusOr<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request);
  // Drops the history before `revision` (the store's own compaction; keys stay).
  absl::Status Compact(int64_t revision);

  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(absl::Duration ttl);
  absl::Status LeaseRevoke(int64_t id);
  // One renewal of lease `id`. The answer's TTL is 0 once the lease is gone (expired, revoked).
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> LeaseKeepAlive(int64_t id);

  // The status of the member at `endpoint` (which must be one of the client's), asked of it
  // alone: its member id, the leader it knows of.
  absl::StatusOr<etcdserverpb::StatusResponse> MemberStatus(const std::string& endpoint);

  // Starts a watch on one endpoint (the one that answered last). `on_response` gets every
  // response (the first one says `created`), from the watch's own thread, until the stream ends;
  // then `on_end` gets why (also after a cancellation by the server: compacted, no leader). The
  // stream asks for a member that has a leader, so a member cut off from the others ends it.
  absl::StatusOr<std::unique_ptr<EtcdWatch>> Watch(
      const etcdserverpb::WatchCreateRequest& request,
      std::function<void(const etcdserverpb::WatchResponse&)> on_response,
      std::function<void(absl::Status)> on_end);

  const std::vector<std::string>& endpoints() const;
  absl::Duration timeout() const;

 private:
  struct Impl;
  explicit EtcdClient(std::unique_ptr<Impl> impl);
  const std::unique_ptr<Impl> impl_;
};

// Whether an error from etcd may go away on its own (an unreachable member, a timeout, a leader
// election): retry it. Others (a malformed request, a request too large, no permission) do not.
bool IsTransient(const absl::Status& status);

}  // namespace autoscale::ledger::etcd
