#include "autoscale/ledger/etcd/client.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/ledger/etcd/rpc.grpc.pb.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace autoscale::ledger::etcd {
namespace {

absl::Status FromGrpc(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", status.error_message()));
}

absl::StatusOr<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd ", absl::string_view(what.data(), what.size()), " ", path, ": cannot be read"));
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return std::chrono::system_clock::now() + std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

}  // namespace

bool IsTransient(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         // A member that is shutting down or restarting cancels calls in flight.
         absl::IsCancelled(status) || absl::IsAborted(status);
}

absl::StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(absl::string_view(list.data(), list.size()), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!absl::ConsumePrefix(&part, "http://")) absl::ConsumePrefix(&part, "https://");
    absl::ConsumeSuffix(&part, "/");
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoints \"", absl::string_view(list.data(), list.size()),
                       "\": an empty entry (expected host:port,host:port,...)"));
    }
    out.emplace_back(part);
  }
  return out;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Impl {
  struct Endpoint {
    std::string address;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
  };

  EtcdOptions options;
  std::vector<Endpoint> endpoints;
  // The endpoint that answered last: calls start there.
  std::atomic<size_t> current{0};

  // Sends a call to the current endpoint, moving on to the next one (each tried once) while
  // they are unreachable or slow.
  template <typename Response, typename Fn>
  absl::StatusOr<Response> Call(const char* what, Fn fn) {
    const size_t n = endpoints.size();
    absl::Status last;
    for (size_t attempt = 0; attempt < n; ++attempt) {
      size_t i = current.load(std::memory_order_relaxed) % n;
      Endpoint& e = endpoints[i];
      grpc::ClientContext context;
      context.set_deadline(DeadlineAfter(options.timeout));
      Response response;
      const grpc::Status s = fn(e, &context, &response);
      if (s.ok()) return response;
      absl::Status status = FromGrpc(s, absl::StrCat("etcd ", what, " at ", e.address));
      if (!IsTransient(status)) return status;
      last = std::move(status);
      current.compare_exchange_strong(i, (i + 1) % n, std::memory_order_relaxed);
    }
    if (n > 1) {
      return absl::Status(last.code(),
                          absl::StrCat(last.message(), " (and every other endpoint failed too)"));
    }
    return last;
  }
};

namespace {

class WatchStream final : public EtcdWatch {
 public:
  WatchStream(etcdserverpb::Watch::Stub& stub, std::string address,
              etcdserverpb::WatchCreateRequest request,
              std::function<void(const etcdserverpb::WatchResponse&)> on_response,
              std::function<void(absl::Status)> on_end,
              std::function<void(const absl::Status&)> on_failure)
      : address_(std::move(address)),
        on_response_(std::move(on_response)),
        on_end_(std::move(on_end)),
        on_failure_(std::move(on_failure)) {
    // Without a leader the member would keep the stream open and send nothing.
    context_.AddMetadata("hasleader", "true");
    // The stream starts on the watch's thread: starting it waits for a connection, which a
    // member that is starting can hold for seconds, and the caller must not wait on that.
    thread_ = std::thread([this, &stub, request = std::move(request)] { Run(stub, request); });
  }

  ~WatchStream() override {
    cancelled_ = true;
    context_.TryCancel();
    thread_.join();
  }

 private:
  void Run(etcdserverpb::Watch::Stub& stub, const etcdserverpb::WatchCreateRequest& create) {
    stream_ = stub.Watch(&context_);
    etcdserverpb::WatchRequest request;
    *request.mutable_create_request() = create;
    if (stream_->Write(request)) {
      etcdserverpb::WatchResponse response;
      while (stream_->Read(&response)) on_response_(response);
    }
    const grpc::Status s = stream_->Finish();
    absl::Status status;
    if (cancelled_) {
      status = absl::CancelledError("etcd watch cancelled");
    } else if (s.ok()) {
      status = absl::UnavailableError(absl::StrCat("etcd watch at ", address_, ": stream ended"));
    } else {
      status = FromGrpc(s, absl::StrCat("etcd watch at ", address_));
      on_failure_(status);
    }
    on_end_(std::move(status));
  }

  const std::string address_;
  std::function<void(const etcdserverpb::WatchResponse&)> on_response_;
  std::function<void(absl::Status)> on_end_;
  std::function<void(const absl::Status&)> on_failure_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      stream_;
  std::atomic<bool> cancelled_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<EtcdClient>> EtcdClient::Connect(EtcdOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: no endpoints given");
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd: timeout must be > 0, got ", absl::FormatDuration(options.timeout)));
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.ca_file.empty()) {
    if (!options.cert_file.empty() || !options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "etcd: a client certificate and key need the CA file (TLS) as well");
    }
    credentials = grpc::InsecureChannelCredentials();
  } else {
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "etcd: give both the client certificate and its key, or neither");
    }
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(options.ca_file, "CA file"));
    if (!options.cert_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile(options.cert_file, "client certificate"));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile(options.key_file, "client key"));
    }
    credentials = grpc::SslCredentials(ssl);
  }
  auto impl = std::make_unique<Impl>();
  for (const std::string& address : options.endpoints) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // this client picks the next endpoint itself
    // Connections of its own: not shared with another client of the same member.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is also the shortest time a connection attempt
    // is given, and 100 ms is too short for a member that is starting.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // A ledger read returns up to the whole snapshot.
    args.SetMaxReceiveMessageSize(256 << 20);
    // Finds a dead connection under a long watch. etcd refuses pings more often than every 5 s
    // (--grpc-keepalive-min-time) and pings without a call.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(address, credentials, args);
    impl->endpoints.push_back({.address = address,
                               .kv = etcdserverpb::KV::NewStub(channel),
                               .watch = etcdserverpb::Watch::NewStub(channel),
                               .lease = etcdserverpb::Lease::NewStub(channel),
                               .maintenance = etcdserverpb::Maintenance::NewStub(channel)});
  }
  impl->options = std::move(options);
  return std::shared_ptr<EtcdClient>(new EtcdClient(std::move(impl)));
}

EtcdClient::EtcdClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdClient::~EtcdClient() = default;

const std::vector<std::string>& EtcdClient::endpoints() const { return impl_->options.endpoints; }
absl::Duration EtcdClient::timeout() const { return impl_->options.timeout; }

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(
    const etcdserverpb::RangeRequest& request) {
  return impl_->Call<etcdserverpb::RangeResponse>(
      "Range", [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::RangeResponse* r) {
        return e.kv->Range(c, request, r);
      });
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request) {
  return impl_->Call<etcdserverpb::TxnResponse>(
      "Txn", [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::TxnResponse* r) {
        return e.kv->Txn(c, request, r);
      });
}

absl::StatusOr<etcdserverpb::PutResponse> EtcdClient::Put(const etcdserverpb::PutRequest& request) {
  return impl_->Call<etcdserverpb::PutResponse>(
      "Put", [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::PutResponse* r) {
        return e.kv->Put(c, request, r);
      });
}

absl::StatusOr<etcdserverpb::DeleteRangeResponse> EtcdClient::DeleteRange(
    const etcdserverpb::DeleteRangeRequest& request) {
  return impl_->Call<etcdserverpb::DeleteRangeResponse>(
      "DeleteRange",
      [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::DeleteRangeResponse* r) {
        return e.kv->DeleteRange(c, request, r);
      });
}

absl::Status EtcdClient::Compact(int64_t revision) {
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  absl::StatusOr<etcdserverpb::CompactionResponse> r =
      impl_->Call<etcdserverpb::CompactionResponse>(
          "Compact",
          [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::CompactionResponse* out) {
            return e.kv->Compact(c, request, out);
          });
  // Compacted already (by us before, or by the server's own auto-compaction): nothing to do.
  if (absl::IsOutOfRange(r.status())) return absl::OkStatus();
  return r.status();
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(absl::Duration ttl) {
  etcdserverpb::LeaseGrantRequest request;
  // Whole seconds, rounded up.
  request.set_ttl(absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1))));
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> r =
      impl_->Call<etcdserverpb::LeaseGrantResponse>(
          "LeaseGrant",
          [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::LeaseGrantResponse* out) {
            return e.lease->LeaseGrant(c, request, out);
          });
  if (r.ok() && !r->error().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd LeaseGrant: ", r->error()));
  }
  return r;
}

absl::Status EtcdClient::LeaseRevoke(int64_t id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(id);
  return impl_
      ->Call<etcdserverpb::LeaseRevokeResponse>(
          "LeaseRevoke",
          [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::LeaseRevokeResponse* out) {
            return e.lease->LeaseRevoke(c, request, out);
          })
      .status();
}

absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> EtcdClient::LeaseKeepAlive(int64_t id) {
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(id);
  // One request on a stream of its own: a renewal every TTL/3 does not need a stream (and a
  // thread to read it) kept open between renewals.
  return impl_->Call<etcdserverpb::LeaseKeepAliveResponse>(
      "LeaseKeepAlive",
      [&](Impl::Endpoint& e, grpc::ClientContext* c, etcdserverpb::LeaseKeepAliveResponse* out) {
        auto stream = e.lease->LeaseKeepAlive(c);
        if (!stream->Write(request) || !stream->Read(out)) {
          grpc::Status s = stream->Finish();
          return s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed")
                        : s;
        }
        stream->WritesDone();
        return stream->Finish();
      });
}

absl::StatusOr<etcdserverpb::StatusResponse> EtcdClient::MemberStatus(const std::string& endpoint) {
  for (Impl::Endpoint& e : impl_->endpoints) {
    if (e.address != endpoint) continue;
    grpc::ClientContext context;
    context.set_deadline(DeadlineAfter(impl_->options.timeout));
    etcdserverpb::StatusResponse response;
    const grpc::Status s =
        e.maintenance->Status(&context, etcdserverpb::StatusRequest(), &response);
    if (!s.ok()) return FromGrpc(s, absl::StrCat("etcd Status at ", endpoint));
    return response;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("etcd Status: ", endpoint, " is not one of this client's endpoints"));
}

absl::StatusOr<std::unique_ptr<EtcdWatch>> EtcdClient::Watch(
    const etcdserverpb::WatchCreateRequest& request,
    std::function<void(const etcdserverpb::WatchResponse&)> on_response,
    std::function<void(absl::Status)> on_end) {
  Impl& impl = *impl_;
  size_t i = impl.current.load(std::memory_order_relaxed) % impl.endpoints.size();
  Impl::Endpoint& e = impl.endpoints[i];
  const size_t n = impl.endpoints.size();
  // A stream that fails moves later calls (and the next watch) on to the next endpoint.
  auto on_failure = [&impl, i, n](const absl::Status& status) {
    if (!IsTransient(status)) return;
    size_t expected = i;
    impl.current.compare_exchange_strong(expected, (i + 1) % n, std::memory_order_relaxed);
  };
  return std::unique_ptr<EtcdWatch>(new WatchStream(*e.watch, e.address, request,
                                                    std::move(on_response), std::move(on_end),
                                                    std::move(on_failure)));
}

}  // namespace autoscale::ledger::etcd
