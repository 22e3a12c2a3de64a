// schedctl: the scheduler's operator CLI. Every command prints one JSON document on stdout; an
// error from the scheduler goes to stderr with exit code 1, a usage error with exit code 2.
//
//   schedctl --server=unix:/run/scheduler.sock nodes
//   schedctl --server=127.0.0.1:10299 register --node=n1 --total=8000m/32GiB --watermark=0.9
//   schedctl place --vm=vm1 --min_cu=1 --max_cu=8 [--initial=500m/2GiB] [--node=n1]
//   schedctl request --node=n1 --vm=vm1 --resources=1000m/4GiB [--last_permit=500m/2GiB]
//   schedctl vms | permits | status | orders --node=n1 | release --vm=vm1
//   schedctl report --order=3 --vm=vm1 [--failed --error=why]
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/init.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/core/resources.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "examples/scheduler/schedctl.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:10299", "The scheduler: host:port or unix:/path");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5), "Deadline of the call");
ABSL_FLAG(std::string, node, "", "Node name (nodes, vms, permits: only this node)");
ABSL_FLAG(std::string, vm, "", "VM name");
ABSL_FLAG(std::string, total, "", "register: what the node can hand out, e.g. 8000m/32GiB");
ABSL_FLAG(double, watermark, 0, "register: fraction of the total; 0 = the scheduler's default");
ABSL_FLAG(std::string, agent_address, "", "register: the node agent's migration address");
ABSL_FLAG(uint32_t, min_cu, 1, "place: bounds in compute units");
ABSL_FLAG(uint32_t, max_cu, 1, "place: bounds in compute units");
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

namespace autoscale::scheduler {
namespace {

constexpr char kUsage[] =
    "Usage: schedctl [--server=ADDR] COMMAND [flags]\n"
    "Commands: nodes, vms, permits, status, register, place, request, release, orders, report";

struct Usage {
  std::string message;
};

api::Resources ResourcesFlag(const std::string& value, const char* flag) {
  absl::StatusOr<core::Resources> r = core::ParseResources(value, flag);
  if (!r.ok()) throw Usage{r.status().ToString()};
  return core::ToProto(*r);
}

api::ComputeUnit ComputeUnitFlag() {
  const api::Resources r = ResourcesFlag(absl::GetFlag(FLAGS_compute_unit), "--compute_unit");
  api::ComputeUnit cu;
  cu.set_milli_cpu(r.milli_cpu());
  cu.set_memory_bytes(r.memory_bytes());
  return cu;
}

std::string Need(const absl::Flag<std::string>& flag, const char* name) {
  std::string v = absl::GetFlag(flag);
  if (v.empty()) throw Usage{absl::StrCat("--", name, " is required")};
  return v;
}

class Ctl {
 public:
  explicit Ctl(std::unique_ptr<rpc::scheduler::SchedulerService> scheduler)
      : scheduler_(std::move(scheduler)) {}

  // Runs `command`; prints its JSON. Returns the exit code.
  int Run(const std::string& command) {
    api::ListRequest list;
    list.set_node(absl::GetFlag(FLAGS_node));
    if (command == "nodes") return Call(&Service::ListNodes, list);
    if (command == "vms") return Call(&Service::ListVms, list);
    if (command == "permits") {
      api::ListVmsResponse vms;
      if (int rc = Call(&Service::ListVms, list, &vms); rc != 0) return rc;
      PermitList out;
      for (const api::VmState& v : vms.vms()) {
        PermitList::Permit* p = out.add_permits();
        p->set_vm(v.vm());
        p->set_node(v.node());
        *p->mutable_permit() = v.permit();
        *p->mutable_requested() = v.requested();
        p->set_migrating(v.migrating());
      }
      std::cout << ToJson(out) << "\n";
      return 0;
    }
    if (command == "status") {
      api::StatusRequest r;
      return Call(&Service::GetStatus, r);
    }
    if (command == "register") {
      api::RegisterNodeRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      *r.mutable_total() = ResourcesFlag(Need(FLAGS_total, "total"), "--total");
      r.set_watermark(absl::GetFlag(FLAGS_watermark));
      r.set_agent_address(absl::GetFlag(FLAGS_agent_address));
      return Call(&Service::RegisterNode, r);
    }
    if (command == "place") {
      api::PlaceVmRequest r;
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
      api::PermitRequest r;
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
      api::ReleaseVmRequest r;
      r.set_vm(Need(FLAGS_vm, "vm"));
      return Call(&Service::ReleaseVm, r);
    }
    if (command == "orders") {
      api::MigrationOrdersRequest r;
      r.set_node(Need(FLAGS_node, "node"));
      return Call(&Service::GetMigrationOrders, r);
    }
    if (command == "report") {
      api::MigrationResult r;
      r.set_order_id(absl::GetFlag(FLAGS_order));
      r.set_vm(Need(FLAGS_vm, "vm"));
      r.set_succeeded(!absl::GetFlag(FLAGS_failed));
      r.set_error(absl::GetFlag(FLAGS_error));
      return Call(&Service::ReportMigration, r);
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
      std::cout << ToJson(*response) << "\n";
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
  try {
    absl::StatusOr<std::unique_ptr<autoscale::rpc::scheduler::SchedulerService>> scheduler =
        autoscale::rpc::scheduler::NewGrpcClient(absl::GetFlag(FLAGS_server),
                                                 absl::GetFlag(FLAGS_timeout));
    if (!scheduler.ok()) throw autoscale::scheduler::Usage{scheduler.status().ToString()};
    autoscale::scheduler::Ctl ctl(*std::move(scheduler));
    return ctl.Run(args[1]);
  } catch (const autoscale::scheduler::Usage& u) {
    std::cerr << "schedctl: " << u.message << "\n" << autoscale::scheduler::kUsage << "\n";
    return 2;
  }
}
