// schedctl: the scheduler's operator CLI. Every command prints one JSON document on stdout (or,
// with -o table, a table for the listings); an error from the scheduler goes to stderr with exit
// code 1, a usage error with exit code 2.
//
//   schedctl --server=unix:/run/scheduler.sock nodes [-o table]
//   schedctl --server=127.0.0.1:10299 register --node=n1 --total=8000m/32GiB --watermark=0.9
//   schedctl place --vm=vm1 --min_cu=1 --max_cu=8 [--initial=500m/2GiB] [--node=n1]
//   schedctl request --node=n1 --vm=vm1 --resources=1000m/4GiB [--last_permit=500m/2GiB]
//   schedctl vms | permits | status | orders --node=n1 | release --vm=vm1
//   schedctl report --order=3 --vm=vm1 [--failed --error=why]
//   schedctl cordon | uncordon | drain --node=n1        # drain again to see its progress
//   schedctl remove --node=n1 [--force]                 # --force drops what it holds (listed)
//   schedctl update-node --node=n1 [--total=4000m/16GiB] [--watermark=0.8]
//   schedctl bounds --vm=vm1 --min_cu=1 --max_cu=16 [--node=n1]
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "autoscale/base/init.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/core/resources.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/rpc/tls_flags.h"
#include "examples/scheduler/schedctl.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:10299",
          "The scheduler: host:port or unix:/path; for a group on etcd, several separated by "
          "commas (the leader is followed)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5), "Deadline of the call");
ABSL_FLAG(std::string, node, "", "Node name (nodes, vms, permits: only this node)");
ABSL_FLAG(std::string, vm, "", "VM name");
ABSL_FLAG(std::string, total, "",
          "register, update-node: what the node can hand out, e.g. 8000m/32GiB");
ABSL_FLAG(double, watermark, 0,
          "register, update-node: fraction of the total; 0 = the scheduler's default (register) "
          "or unchanged (update-node)");
ABSL_FLAG(std::string, agent_address, "", "register: the node agent's migration address");
ABSL_FLAG(uint32_t, min_cu, 1, "place, bounds: bounds in compute units");
ABSL_FLAG(uint32_t, max_cu, 1, "place, bounds: bounds in compute units");
ABSL_FLAG(std::string, compute_unit, "", "place/request: compute unit, e.g. 250m/1GiB");
ABSL_FLAG(std::string, initial, "", "place: starting size (default: min_cu compute units)");
ABSL_FLAG(bool, migratable, false, "place: may the scheduler migrate the VM");
ABSL_FLAG(uint32_t, cpu_overcommit_milli, 0, "place: CPU overcommit in thousandths (0 = none)");
ABSL_FLAG(uint32_t, memory_overcommit_milli, 0, "place: memory overcommit (0 = none)");
ABSL_FLAG(std::string, resources, "", "request: the size the VM should have");
ABSL_FLAG(std::string, last_permit, "", "request: the last permit the agent received");
ABSL_FLAG(uint64_t, order, 0, "report: the migration order's id");
ABSL_FLAG(bool, failed, false, "report: the migration failed");
ABSL_FLAG(std::string, error, "", "report: why it failed");
ABSL_FLAG(bool, force, false, "remove: also a node that holds VMs (they are dropped)");
ABSL_FLAG(std::string, o, "json", "Output of the listings: json or table");

namespace autoscale::scheduler {
namespace {

constexpr char kUsage[] =
    "Usage: schedctl [--server=ADDR] [-o json|table] COMMAND [flags]\n"
    "Commands: nodes, vms, permits, status, register, place, request, release, orders, report, "
    "cordon, uncordon, drain, remove, update-node, bounds";

struct Usage {
  std::string message;
};

api::v1::Resources ResourcesFlag(const std::string& value, const char* flag) {
  absl::StatusOr<core::Resources> r = core::ParseResources(value, flag);
  if (!r.ok()) throw Usage{r.status().ToString()};
  return core::ToProto(*r);
}

api::v1::ComputeUnit ComputeUnitFlag() {
  const api::v1::Resources r = ResourcesFlag(absl::GetFlag(FLAGS_compute_unit), "--compute_unit");
  api::v1::ComputeUnit cu;
  cu.set_milli_cpu(r.milli_cpu());
  cu.set_memory_bytes(r.memory_bytes());
  return cu;
}

std::string Need(const absl::Flag<std::string>& flag, const char* name) {
  std::string v = absl::GetFlag(flag);
  if (v.empty()) throw Usage{absl::StrCat("--", name, " is required")};
  return v;
}

// A table: a header row and rows, columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()));
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
      }
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string Amount(const api::v1::Resources& r) {
  return core::Resources{r.milli_cpu(), r.memory_bytes()}.ToString();
}

std::string NodeState(const api::v1::NodeState& n) {
  std::vector<std::string> s;
  if (n.draining()) {
    s.push_back("draining");
  } else if (n.cordoned()) {
    s.push_back("cordoned");
  }
  if (n.over_capacity()) s.push_back("over-capacity");
  if (n.awaiting_agent()) s.push_back("awaiting-agent");
  return s.empty() ? "ready" : absl::StrJoin(s, ",");
}

std::string Age(int64_t started_unix_micros) {
  if (started_unix_micros == 0) return "?";
  return absl::FormatDuration(
      absl::Trunc(absl::Now() - absl::FromUnixMicros(started_unix_micros), absl::Seconds(1)));
}

void PrintNodes(const google::protobuf::RepeatedPtrField<api::v1::NodeState>& nodes) {
  Table t({"NODE", "STATE", "TOTAL", "RESERVED", "WATERMARK", "MIGRATING", "VMS", "AGENT"});
  for (const api::v1::NodeState& n : nodes) {
    t.Add({n.node(), NodeState(n), Amount(n.total()), Amount(n.reserved()), Amount(n.watermark()),
           Amount(n.migrating()), std::to_string(n.vm_count()), n.agent_address()});
  }
  t.Print(std::cout);
}

void PrintOrders(const google::protobuf::RepeatedPtrField<api::v1::MigrationOrder>& orders) {
  Table t({"ORDER", "VM", "FROM", "TO", "TARGET AGENT", "AGE"});
  for (const api::v1::MigrationOrder& o : orders) {
    t.Add({std::to_string(o.id()), o.vm(), o.source_node(), o.target_node(),
           o.target_agent_address(), Age(o.started_unix_micros())});
  }
  t.Print(std::cout);
}

void PrintVms(const google::protobuf::RepeatedPtrField<api::v1::VmState>& vms) {
  Table t({"VM", "NODE", "BOUNDS", "PERMIT", "REQUESTED", "MIGRATABLE", "MIGRATING"});
  for (const api::v1::VmState& v : vms) {
    t.Add({v.vm(), v.node(), absl::StrCat(v.bounds().min_cu(), "..", v.bounds().max_cu(), " CU"),
           Amount(v.permit()), Amount(v.requested()), v.migratable() ? "yes" : "no",
           v.migrating() ? absl::StrCat("to ", v.migration().target_node(), " (order ",
                                        v.migration().id(), ")")
                         : "no"});
  }
  t.Print(std::cout);
}

// The printers for -o table, by response type.
void PrintTable(const api::v1::ListNodesResponse& r) { PrintNodes(r.nodes()); }
void PrintTable(const api::v1::ListVmsResponse& r) { PrintVms(r.vms()); }
void PrintTable(const api::v1::MigrationOrdersResponse& r) { PrintOrders(r.orders()); }
void PrintTable(const api::v1::DrainNodeResponse& r) {
  google::protobuf::RepeatedPtrField<api::v1::NodeState> node;
  *node.Add() = r.node();
  PrintNodes(node);
  std::cout << "\n";
  Table t({"VM", "DRAIN"});
  for (const api::v1::MigrationOrder& o : r.migrating()) {
    t.Add({o.vm(), absl::StrCat("migrating to ", o.target_node(), " (order ", o.id(), ", ",
                                Age(o.started_unix_micros()), ")")});
  }
  for (const std::string& vm : r.waiting()) t.Add({vm, "waiting for room on another node"});
  for (const std::string& vm : r.staying()) t.Add({vm, "stays: not migratable"});
  t.Print(std::cout);
  std::cout << (r.done() ? "\ndone: no VM left" : "\nnot done") << "\n";
}
void PrintTable(const api::v1::RemoveNodeResponse& r) {
  PrintVms(r.dropped_vms());
  if (r.cancelled_migrations_size() > 0) {
    std::cout << "\n";
    PrintOrders(r.cancelled_migrations());
  }
}
void PrintTable(const PermitList& r) {
  Table t({"VM", "NODE", "PERMIT", "REQUESTED", "MIGRATING"});
  for (const PermitList::Permit& p : r.permits()) {
    t.Add({p.vm(), p.node(), Amount(p.permit()), Amount(p.requested()),
           p.migrating() ? "yes" : "no"});
  }
  t.Print(std::cout);
}
// Every other answer is one object: JSON either way.
void PrintTable(const google::protobuf::Message& m) { std::cout << ToJson(m) << "\n"; }

template <typename M>
void Print(const M& m) {
  if (absl::GetFlag(FLAGS_o) == "table") {
    PrintTable(m);
  } else {
    std::cout << ToJson(m) << "\n";
  }
}

class Ctl {
 public:
  explicit Ctl(std::unique_ptr<rpc::scheduler::SchedulerService> scheduler)
      : scheduler_(std::move(scheduler)) {}

  // Runs `command`; prints its JSON. Returns the exit code.
  int Run(const std::string& command) {
    api::v1::ListRequest list;
    list.set_node(absl::GetFlag(FLAGS_node));
    if (command == "nodes") return Call(&Service::ListNodes, list);
    if (command == "vms") return Call(&Service::ListVms, list);
    if (command == "permits") {
      api::v1::ListVmsResponse vms;
      if (int rc = Call(&Service::ListVms, list, &vms); rc != 0) return rc;
      PermitList out;
      for (const api::v1::VmState& v : vms.vms()) {
        PermitList::Permit* p = out.add_permits();
        p->set_vm(v.vm());
        p->set_node(v.node());
        *p->mutable_permit() = v.permit();
        *p->mutable_requested() = v.requested();
        p->set_migrating(v.migrating());
      }
      Print(out);
      return 0;
    }
    if (command == "status") {
      api::v1::StatusRequest r;
      return Call(&Service::GetStatus, r);
    }
    if (command == "register") {
      api::v1::RegisterNodeRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      *r.mutable_total() = ResourcesFlag(Need(FLAGS_total, "total"), "--total");
      r.set_watermark(absl::GetFlag(FLAGS_watermark));
      r.set_agent_address(absl::GetFlag(FLAGS_agent_address));
      return Call(&Service::RegisterNode, r);
    }
    if (command == "place") {
      api::v1::PlaceVmRequest r;
      r.set_vm(Need(FLAGS_vm, "vm"));
      r.mutable_bounds()->set_min_cu(absl::GetFlag(FLAGS_min_cu));
      r.mutable_bounds()->set_max_cu(absl::GetFlag(FLAGS_max_cu));
      if (!absl::GetFlag(FLAGS_compute_unit).empty()) *r.mutable_compute_unit() = ComputeUnitFlag();
      if (!absl::GetFlag(FLAGS_initial).empty()) {
        *r.mutable_initial() = ResourcesFlag(absl::GetFlag(FLAGS_initial), "--initial");
      }
      r.set_migratable(absl::GetFlag(FLAGS_migratable));
      r.set_cpu_overcommit_milli(absl::GetFlag(FLAGS_cpu_overcommit_milli));
      r.set_memory_overcommit_milli(absl::GetFlag(FLAGS_memory_overcommit_milli));
      r.set_node(absl::GetFlag(FLAGS_node));
      return Call(&Service::PlaceVm, r);
    }
    if (command == "request") {
      api::v1::PermitRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      r.set_vm(Need(FLAGS_vm, "vm"));
      Need(FLAGS_compute_unit, "compute_unit");
      *r.mutable_compute_unit() = ComputeUnitFlag();
      *r.mutable_resources() = ResourcesFlag(Need(FLAGS_resources, "resources"), "--resources");
      if (!absl::GetFlag(FLAGS_last_permit).empty()) {
        *r.mutable_last_permit() = ResourcesFlag(absl::GetFlag(FLAGS_last_permit), "--last_permit");
      }
      return Call(&Service::Request, r);
    }
    if (command == "release") {
      api::v1::ReleaseVmRequest r;
      r.set_vm(Need(FLAGS_vm, "vm"));
      return Call(&Service::ReleaseVm, r);
    }
    if (command == "orders") {
      api::v1::MigrationOrdersRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      return Call(&Service::GetMigrationOrders, r);
    }
    if (command == "report") {
      api::v1::MigrationResult r;
      r.set_order_id(absl::GetFlag(FLAGS_order));
      r.set_vm(Need(FLAGS_vm, "vm"));
      r.set_succeeded(!absl::GetFlag(FLAGS_failed));
      r.set_error(absl::GetFlag(FLAGS_error));
      return Call(&Service::ReportMigration, r);
    }
    if (command == "cordon" || command == "uncordon") {
      api::v1::CordonNodeRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      r.set_cordon(command == "cordon");
      return Call(&Service::CordonNode, r);
    }
    if (command == "drain") {
      api::v1::DrainNodeRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      return Call(&Service::DrainNode, r);
    }
    if (command == "remove") {
      api::v1::RemoveNodeRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      r.set_force(absl::GetFlag(FLAGS_force));
      return Call(&Service::RemoveNode, r);
    }
    if (command == "update-node") {
      api::v1::UpdateNodeRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      if (!absl::GetFlag(FLAGS_total).empty()) {
        *r.mutable_total() = ResourcesFlag(absl::GetFlag(FLAGS_total), "--total");
      }
      r.set_watermark(absl::GetFlag(FLAGS_watermark));
      if (!r.has_total() && r.watermark() == 0)
        throw Usage{"update-node: give --total or --watermark"};
      return Call(&Service::UpdateNode, r);
    }
    if (command == "bounds") {
      api::v1::UpdateVmBoundsRequest r;
      r.set_vm(Need(FLAGS_vm, "vm"));
      r.set_node(absl::GetFlag(FLAGS_node));
      r.mutable_bounds()->set_min_cu(absl::GetFlag(FLAGS_min_cu));
      r.mutable_bounds()->set_max_cu(absl::GetFlag(FLAGS_max_cu));
      return Call(&Service::UpdateVmBounds, r);
    }
    throw Usage{absl::StrCat("unknown command \"", command, "\"")};
  }

 private:
  using Service = rpc::scheduler::SchedulerService;

  template <typename Req, typename Resp>
  int Call(absl::StatusOr<Resp> (Service::*call)(const Req&), const Req& request,
           Resp* out = nullptr) {
    absl::StatusOr<Resp> response = (scheduler_.get()->*call)(request);
    if (!response.ok()) {
      std::cerr << "schedctl: " << absl::StatusCodeToString(response.status().code()) << ": "
                << response.status().message() << "\n";
      return 1;
    }
    if (out != nullptr) {
      *out = *std::move(response);
    } else {
      Print(*response);
    }
    return 0;
  }

  std::unique_ptr<Service> scheduler_;
};

}  // namespace
}  // namespace autoscale::scheduler

int main(int argc, char** argv) {
  std::vector<char*> args = autoscale::InitProgram(argc, argv, autoscale::scheduler::kUsage);
  if (args.size() != 2) {
    std::cerr << autoscale::scheduler::kUsage << "\n";
    return 2;
  }
  if (const std::string o = absl::GetFlag(FLAGS_o); o != "json" && o != "table") {
    std::cerr << "schedctl: -o must be json or table, not \"" << o << "\"\n";
    return 2;
  }
  try {
    // An admin certificate (spiffe://<td>/admin) for the admin calls; --insecure for a plaintext
    // scheduler.
    absl::StatusOr<autoscale::rpc::Security> security =
        autoscale::rpc::SecurityFromTlsFlags("schedctl");
    if (!security.ok()) throw autoscale::scheduler::Usage{security.status().ToString()};
    absl::StatusOr<std::string> trust_domain = autoscale::rpc::TrustDomainFromFlags(*security);
    if (!trust_domain.ok()) throw autoscale::scheduler::Usage{trust_domain.status().ToString()};
    absl::StatusOr<std::unique_ptr<autoscale::rpc::scheduler::SchedulerService>> scheduler =
        autoscale::rpc::scheduler::NewGrpcClient(
            absl::GetFlag(FLAGS_server), absl::GetFlag(FLAGS_timeout), *security,
            autoscale::rpc::ServerIdentity(*security, *trust_domain, "scheduler"));
    if (!scheduler.ok()) throw autoscale::scheduler::Usage{scheduler.status().ToString()};
    autoscale::scheduler::Ctl ctl(*std::move(scheduler));
    return ctl.Run(args[1]);
  } catch (const autoscale::scheduler::Usage& u) {
    std::cerr << "schedctl: " << u.message << "\n" << autoscale::scheduler::kUsage << "\n";
    return 2;
  }
}
