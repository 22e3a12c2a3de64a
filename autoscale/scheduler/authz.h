// Authz: who may do what on the scheduler, given the caller's identity as the transport
// authenticated it (the first URI SAN of its certificate; rpc::scheduler::ServiceFor). The
// trust model (README "Security"):
//   - spiffe://<td>/node/<name>, a node's agent: registers and updates only its own node, asks
//     and reports for its own node's VMs (the ledger refuses a VM that is not on the node named),
//     reads its own node's orders and VMs, and reports a migration only as the order's source;
//   - spiffe://<td>/admin: everything (placement, release, node lifecycle, every read);
//   - anyone else (the scheduler's own identity, a VM's, a certificate without a URI SAN):
//     nothing.
// A node's size is the operator's: once the scheduler knows a node, its agent may lower the node's
// total and watermark but not raise them (only the admin may; a registration asking for more
// keeps what the node has, and its address is taken), and a node it does not know yet is
// registered at most at `Options::max_node_total`; so a stolen node certificate cannot make its
// node pull every placement and migration to itself.
// Identities of another trust domain than `Options::trust_domain` are refused whatever they name.
// A denial is PERMISSION_DENIED naming the identity and what it tried, counted by method. Each
// identity also gets a token bucket (`Options`): a misbehaving agent is answered
// RESOURCE_EXHAUSTED and cannot starve the others. The admin has a bucket of its own like any
// identity (it cannot starve the agents either; schedctl makes a call or a few).
//
//   Authz authz(scheduler->service(), [&](const std::string& vm) {
//     return scheduler->ledger().GetVm(vm); });
//   rpc::scheduler::StartGrpcServer([&](const std::string& id) { return authz.For(id); },
//                                   listen, security);
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/base/clock.h"
#include "autoscale/core/resources.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/rpc/identity.h"
#include "autoscale/rpc/scheduler/scheduler.h"

namespace autoscale::scheduler {

using rpc::Identity;
using rpc::ParseIdentity;

class Authz {
 public:
  // Where a VM is and where it migrates (the scheduler's ledger); on a standby, the error the
  // caller should see (UNAVAILABLE naming the leader).
  using VmLookup = std::function<absl::StatusOr<ledger::VmInfo>(const std::string& vm)>;
  struct Options {
    // Calls per second each identity may make on average, and in a burst.
    double rate = 1000;
    double burst = 2000;
    Clock* clock = nullptr;  // null: the real one
    // Only identities of this trust domain ("prod" for spiffe://prod/...) may call; "": any the
    // CA signs (the scheduler's --trust_domain).
    std::string trust_domain{};
    // The largest total a node's agent may register a node the scheduler does not know yet with
    // (per resource; zero: no cap). The admin is not capped.
    core::Resources max_node_total{};
  };

  // `inner` answers what is allowed; it and the lookup must outlive this.
  Authz(rpc::scheduler::SchedulerService& inner, VmLookup lookup, Options options);
  Authz(rpc::scheduler::SchedulerService& inner, VmLookup lookup)
      : Authz(inner, std::move(lookup), Options{}) {}

  // The service as `identity` (a URI, "" for none) may use it: each call checked, then answered
  // by the inner service.
  std::shared_ptr<rpc::scheduler::SchedulerService> For(const std::string& identity);

  // Denials so far, by method; and calls refused by the rate limit.
  std::map<std::string, uint64_t> Denials() const;
  uint64_t RateLimited() const;
  // The Prometheus lines of the two (metrics.h's format).
  std::string MetricsText() const;

 private:
  class Checked;

  // OK, or PERMISSION_DENIED naming `who` and `action` (counted).
  absl::Status Deny(const Identity& who, const char* method, const std::string& action);
  // Every call's first step: PERMISSION_DENIED for an identity of another trust domain, then a
  // token for `who`, or RESOURCE_EXHAUSTED.
  absl::Status Take(const Identity& who, const char* method);
  // For a node's agent registering or updating its own node. A new node must stay within
  // max_node_total. An UpdateNode that raises `total` (null: unchanged) or `watermark` (0:
  // unchanged) is PERMISSION_DENIED. A RegisterNode of a known node is lowered to what the node
  // has (each resource of `total`, and `watermark`, whose 0, the default, is the node's too):
  // an agent restarting with its old config still registers its address.
  absl::Status NotRaised(const Identity& who, const char* method, const std::string& node,
                         api::v1::Resources* total, double& watermark);

  rpc::scheduler::SchedulerService& inner_;
  const VmLookup lookup_;
  const Options options_;
  Clock& clock_;

  struct Bucket {
    double tokens = 0;
    absl::Time last{};
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> denials_ ABSL_GUARDED_BY(mu_);
  uint64_t rate_limited_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace autoscale::scheduler
