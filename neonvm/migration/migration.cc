#include "neonvm/migration/migration.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"
#include "neonvm/qmp/qmp_client.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace autoscale::neonvm::migration {
namespace {

using launcher::Vm;
using rapidjson::Value;

constexpr char kPeripheral[] = "/machine/peripheral/";

absl::StatusOr<rapidjson::Document> ParseReply(const std::string& json, const char* what) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError()) return absl::InternalError(absl::StrCat("unreadable ", what, " reply"));
  return doc;
}

std::string Compact(const Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// `v`'s member `name`, or null when `v` is not an object or has none.
const Value& Member(const Value& v, const char* name) {
  static const Value kNull;
  if (!v.IsObject()) return kNull;
  auto it = v.FindMember(name);
  return it != v.MemberEnd() ? it->value : kNull;
}

std::string StringMember(const Value& v, const char* name) {
  if (!v.IsObject()) return "";
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

int64_t IntMember(const Value& v, const char* name) {
  if (!v.IsObject()) return 0;
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
}

absl::StatusOr<std::string> RunStatus(Vm& vm) {
  ASSIGN_OR_RETURN(std::string reply, vm.qmp().Execute("query-status"));
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseReply(reply, "query-status"));
  return StringMember(doc, "status");
}

std::string Capabilities(std::initializer_list<std::pair<const char*, bool>> caps) {
  std::string out = R"({"capabilities":[)";
  bool first = true;
  for (const auto& [name, state] : caps) {
    absl::StrAppend(&out, first ? "" : ",", R"({"capability":")", name, R"(","state":)",
                    state ? "true" : "false", "}");
    first = false;
  }
  return out + "]}";
}

absl::Status PostcopyLost(const absl::Status& why) {
  return absl::Status(why.code(), absl::StrCat(why.message(),
                                               "; the failure came after the switch to "
                                               "postcopy, so the source cannot resume"));
}

absl::Status Replay(const Devices& devices, Vm& target) {
  for (const std::string& args : devices.cpu_device_add_args) {
    RETURN_IF_ERROR(target.qmp().Execute("device_add", args).status());
  }
  if (devices.virtio_mem_requested_bytes) {
    RETURN_IF_ERROR(
        target.qmp()
            .Execute("qom-set", absl::StrCat(R"({"path":")", kPeripheral, launcher::kVirtioMemId,
                                             R"(","property":"requested-size","value":)",
                                             *devices.virtio_mem_requested_bytes, "}"))
            .status());
  }
  return absl::OkStatus();
}

// Makes sure a source whose migration failed runs again (QEMU restarts a source whose precopy
// failed; make sure of it).
void ResumeSource(qmp::QmpClient& source) {
  absl::StatusOr<std::string> reply = source.Execute("query-status");
  if (!reply.ok()) return;
  absl::StatusOr<rapidjson::Document> doc = ParseReply(*reply, "query-status");
  if (!doc.ok()) return;
  std::string state = StringMember(*doc, "status");
  if (state == "postmigrate" || state == "paused" || state == "finish-migrate") {
    absl::Status resumed = source.Execute("cont").status();
    if (!resumed.ok()) LOG(WARNING) << resumed;
  }
}

// Ends a failed migration: the target goes, the source runs as before.
absl::Status Abandon(Vm& source, Vm& target, bool source_was_running, bool postcopy,
                     const absl::Status& why) {
  absl::Status stopped = target.Stop(absl::Seconds(2));
  if (!stopped.ok()) LOG(WARNING) << stopped;
  if (postcopy) return PostcopyLost(why);
  if (source_was_running && source.Running()) ResumeSource(source.qmp());
  return why;
}

}  // namespace

absl::StatusOr<Devices> CaptureDevices(qmp::QmpClient& source, const launcher::VmSpec& spec) {
  Devices devices;
  ASSIGN_OR_RETURN(std::string cpus_json, source.Execute("query-hotpluggable-cpus"));
  ASSIGN_OR_RETURN(rapidjson::Document cpus, ParseReply(cpus_json, "query-hotpluggable-cpus"));
  if (!cpus.IsArray()) return absl::InternalError("query-hotpluggable-cpus: not an array");
  for (const Value& cpu : cpus.GetArray()) {
    std::string path = StringMember(cpu, "qom-path");
    const Value& props_value = Member(cpu, "props");
    if (!absl::StartsWith(path, kPeripheral) || !props_value.IsObject()) continue;
    std::string props = Compact(props_value);
    devices.cpu_device_add_args.push_back(
        absl::StrCat(R"({"driver":)", qmp::JsonQuote(StringMember(cpu, "type")), R"(,"id":)",
                     qmp::JsonQuote(path.substr(sizeof(kPeripheral) - 1)), ",", props.substr(1)));
  }
  if (spec.memory_slots_max > spec.memory_slots_min) {
    ASSIGN_OR_RETURN(
        std::string requested,
        source.Execute("qom-get", absl::StrCat(R"({"path":")", kPeripheral, launcher::kVirtioMemId,
                                               R"(","property":"requested-size"})")));
    int64_t bytes;
    if (!absl::SimpleAtoi(requested, &bytes) || bytes < 0) {
      return absl::InternalError("qom-get requested-size: not a size: " + requested);
    }
    devices.virtio_mem_requested_bytes = bytes;
  }
  return devices;
}

absl::StatusOr<std::unique_ptr<Vm>> StartIncoming(launcher::VmSpec spec, const Devices& devices) {
  spec.incoming = true;
  // What the source has now is replayed below, not taken from its original spec.
  spec.cpus_use = spec.cpus_min;
  spec.memory_slots_use = spec.memory_slots_min;
  // Both may run on one host at once, so the target cannot have the source's host ports.
  for (launcher::HostForward& f : spec.host_forwards) f.host_port = 0;
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> target, Vm::Start(spec));
  RETURN_IF_ERROR(Annotate(
      Replay(devices, *target),
      absl::StrCat("replaying the devices of VM ", spec.name, " on its migration target")));
  return target;
}

absl::StatusOr<std::unique_ptr<Vm>> StartTarget(Vm& source) {
  ASSIGN_OR_RETURN(Devices devices, CaptureDevices(source.qmp(), source.spec()));
  return StartIncoming(source.spec(), devices);
}

absl::StatusOr<std::string> Listen(Vm& target, bool allow_postcopy) {
  const std::string uri = absl::StrCat("unix:", target.runtime_dir(), "/migration.sock");
  RETURN_IF_ERROR(target.qmp()
                      .Execute("migrate-set-capabilities",
                               Capabilities({{"events", true}, {"postcopy-ram", allow_postcopy}}))
                      .status());
  RETURN_IF_ERROR(
      target.qmp().Execute("migrate-incoming", absl::StrCat(R"({"uri":")", uri, R"("})")).status());
  return uri;
}

absl::StatusOr<MigrationStats> Send(qmp::QmpClient& source, const std::string& uri,
                                    const MigrationOptions& options) {
  const absl::Time deadline = absl::Now() + options.timeout;
  const std::string where = absl::StrCat("migrating ", source.address(), " to ", uri);
  const bool postcopy_allowed = options.allow_postcopy;
  bool postcopy = false;
  auto fail = [&](const absl::Status& s) {
    absl::Status why = Annotate(s, where);
    if (postcopy) return PostcopyLost(why);
    ResumeSource(source);
    return why;
  };
  auto step = [&](const char* command, const std::string& args) {
    return source.Execute(command, args, std::max(deadline - absl::Now(), absl::Seconds(1)))
        .status();
  };

  absl::Status s =
      step("migrate-set-capabilities", Capabilities({{"events", true},
                                                     {"auto-converge", options.auto_converge},
                                                     {"postcopy-ram", postcopy_allowed}}));
  if (s.ok()) {
    s = step(
        "migrate-set-parameters",
        absl::StrCat(R"({"downtime-limit":)", absl::ToInt64Milliseconds(options.downtime_limit),
                     R"(,"max-bandwidth":)", options.max_bandwidth_bytes_per_second, "}"));
  }
  if (s.ok()) s = step("migrate", absl::StrCat(R"({"uri":")", uri, R"("})"));
  if (!s.ok()) return fail(s);

  rapidjson::Document info;
  while (true) {
    absl::StatusOr<std::string> reply = source.Execute("query-migrate");
    if (!reply.ok()) return fail(reply.status());
    absl::StatusOr<rapidjson::Document> parsed = ParseReply(*reply, "query-migrate");
    if (!parsed.ok()) return fail(parsed.status());
    info = std::move(*parsed);
    std::string status = StringMember(info, "status");
    if (status == "completed") break;
    if (status == "failed" || status == "cancelled") {
      std::string desc = StringMember(info, "error-desc");
      return fail(absl::AbortedError(
          absl::StrCat("QEMU reports the migration ", status, desc.empty() ? "" : ": ", desc)));
    }
    if (absl::Now() >= deadline) {
      // Cancel and wait (briefly) for QEMU to let go of the source: until the migration is over,
      // QEMU refuses device changes.
      source.Execute("migrate_cancel").status().IgnoreError();
      for (absl::Time until = absl::Now() + absl::Seconds(5); absl::Now() < until;) {
        absl::StatusOr<std::string> r = source.Execute("query-migrate");
        if (!r.ok()) break;
        absl::StatusOr<rapidjson::Document> d = ParseReply(*r, "query-migrate");
        if (!d.ok()) break;
        std::string now = StringMember(*d, "status");
        if (now != "cancelling" && now != "active" && now != "setup") break;
        absl::SleepFor(options.poll_interval);
      }
      return fail(absl::DeadlineExceededError(absl::StrCat(
          "not finished after ", absl::FormatDuration(options.timeout), " (", status, ", ",
          IntMember(Member(info, "ram"), "remaining"), " bytes left); cancelled")));
    }
    if (postcopy_allowed && !postcopy && status == "active" &&
        IntMember(Member(info, "ram"), "dirty-sync-count") >= options.postcopy_after_passes) {
      absl::Status switched = step("migrate-start-postcopy", "");
      if (!switched.ok()) return fail(switched);
      postcopy = true;
      VLOG(1) << where << ": switched to postcopy";
    }
    absl::SleepFor(options.poll_interval);
  }

  MigrationStats stats;
  stats.total_time = absl::Milliseconds(IntMember(info, "total-time"));
  stats.downtime = absl::Milliseconds(IntMember(info, "downtime"));
  stats.setup_time = absl::Milliseconds(IntMember(info, "setup-time"));
  const Value& ram = Member(info, "ram");
  stats.transferred_bytes = IntMember(ram, "transferred");
  stats.ram_bytes = IntMember(ram, "total");
  stats.passes = IntMember(ram, "dirty-sync-count");
  stats.postcopy = postcopy;
  return stats;
}

absl::Status AwaitIncoming(Vm& target, bool expect_running, absl::Duration timeout) {
  // The source has sent everything; the target is running once it has loaded it.
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    ASSIGN_OR_RETURN(std::string state, RunStatus(target));
    if (state != "inmigrate") {
      if (expect_running && state != "running") {
        return absl::InternalError(absl::StrCat("the migration target of VM ", target.name(),
                                                " ended in state ", state, " instead of running"));
      }
      return absl::OkStatus();
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the migration target of VM ", target.name(), " did not start in time"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::StatusOr<MigrationStats> Migrate(Vm& source, Vm& target, const MigrationOptions& options) {
  const absl::Time deadline = absl::Now() + options.timeout;
  const std::string where = absl::StrCat("migrating VM ", source.name(), " (QEMU ", source.pid(),
                                         " to ", target.pid(), ")");
  ASSIGN_OR_RETURN(std::string source_state, RunStatus(source));
  const bool was_running = source_state == "running";
  absl::StatusOr<std::string> uri = Listen(target, options.allow_postcopy);
  if (!uri.ok()) return Abandon(source, target, was_running, false, Annotate(uri.status(), where));
  absl::StatusOr<MigrationStats> stats = Send(source.qmp(), *uri, options);
  if (!stats.ok()) {
    // Send resumed the source already (unless postcopy lost it); the target goes.
    absl::Status stopped = target.Stop(absl::Seconds(2));
    if (!stopped.ok()) LOG(WARNING) << stopped;
    return stats.status();
  }
  absl::Status started =
      AwaitIncoming(target, was_running, std::max(deadline - absl::Now(), absl::Seconds(1)));
  if (!started.ok()) return Abandon(source, target, was_running, stats->postcopy, started);
  absl::Status stopped = source.Stop();
  if (!stopped.ok()) LOG(WARNING) << where << ": stopping the source: " << stopped;
  return stats;
}

absl::StatusOr<Migrated> LiveMigrate(Vm& source, const MigrationOptions& options) {
  Migrated m;
  ASSIGN_OR_RETURN(m.vm, StartTarget(source));
  ASSIGN_OR_RETURN(m.stats, Migrate(source, *m.vm, options));
  return m;
}

}  // namespace autoscale::neonvm::migration
