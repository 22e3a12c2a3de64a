#include "neonvm/migration/migration.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
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

// Replays on `target` the vCPUs added to `source` as devices and its virtio-mem request.
absl::Status ReplayDevices(Vm& source, Vm& target) {
  ASSIGN_OR_RETURN(std::string cpus_json, source.qmp().Execute("query-hotpluggable-cpus"));
  ASSIGN_OR_RETURN(rapidjson::Document cpus, ParseReply(cpus_json, "query-hotpluggable-cpus"));
  if (!cpus.IsArray()) return absl::InternalError("query-hotpluggable-cpus: not an array");
  for (const Value& cpu : cpus.GetArray()) {
    std::string path = StringMember(cpu, "qom-path");
    const Value& props_value = Member(cpu, "props");
    if (!absl::StartsWith(path, kPeripheral) || !props_value.IsObject()) continue;
    std::string props = Compact(props_value);
    std::string args =
        absl::StrCat(R"({"driver":)", qmp::JsonQuote(StringMember(cpu, "type")), R"(,"id":)",
                     qmp::JsonQuote(path.substr(sizeof(kPeripheral) - 1)), ",", props.substr(1));
    RETURN_IF_ERROR(target.qmp().Execute("device_add", args).status());
  }
  const launcher::VmSpec& spec = source.spec();
  if (spec.memory_slots_max > spec.memory_slots_min) {
    std::string path = absl::StrCat(kPeripheral, launcher::kVirtioMemId);
    ASSIGN_OR_RETURN(
        std::string requested,
        source.qmp().Execute(
            "qom-get", absl::StrCat(R"({"path":")", path, R"(","property":"requested-size"})")));
    RETURN_IF_ERROR(
        target.qmp()
            .Execute("qom-set",
                     absl::StrCat(R"({"path":")", path, R"(","property":"requested-size","value":)",
                                  requested, "}"))
            .status());
  }
  return absl::OkStatus();
}

// Ends a failed migration: the target goes, the source runs as before.
absl::Status Abandon(Vm& source, Vm& target, bool source_was_running, bool postcopy,
                     const absl::Status& why) {
  absl::Status stopped = target.Stop(absl::Seconds(2));
  if (!stopped.ok()) LOG(WARNING) << stopped;
  if (postcopy) {
    return absl::Status(why.code(), absl::StrCat(why.message(),
                                                 "; the failure came after the switch to "
                                                 "postcopy, so the source cannot resume"));
  }
  if (source_was_running && source.Running()) {
    absl::StatusOr<std::string> state = RunStatus(source);
    if (state.ok() && *state != "running") {
      // QEMU restarts a source whose precopy failed; make sure of it.
      absl::Status resumed = source.qmp().Execute("cont").status();
      if (!resumed.ok()) LOG(WARNING) << resumed;
    }
  }
  return why;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Vm>> StartTarget(Vm& source) {
  launcher::VmSpec spec = source.spec();
  spec.incoming = true;
  // What the source has now is replayed below, not taken from its original spec.
  spec.cpus_use = spec.cpus_min;
  spec.memory_slots_use = spec.memory_slots_min;
  // Both run on this host at once, so the target cannot have the source's host ports.
  for (launcher::HostForward& f : spec.host_forwards) f.host_port = 0;
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> target, Vm::Start(spec));
  RETURN_IF_ERROR(Annotate(
      ReplayDevices(source, *target),
      absl::StrCat("replaying the devices of VM ", source.name(), " on its migration target")));
  return target;
}

absl::StatusOr<MigrationStats> Migrate(Vm& source, Vm& target, const MigrationOptions& options) {
  absl::Time deadline = absl::Now() + options.timeout;
  const std::string where = absl::StrCat("migrating VM ", source.name(), " (QEMU ", source.pid(),
                                         " to ", target.pid(), ")");
  ASSIGN_OR_RETURN(std::string source_state, RunStatus(source));
  const bool was_running = source_state == "running";
  const std::string uri = absl::StrCat("unix:", target.runtime_dir(), "/migration.sock");
  const bool postcopy_allowed = options.allow_postcopy;
  bool postcopy = false;

  auto fail = [&](const absl::Status& s) {
    return Abandon(source, target, was_running, postcopy, Annotate(s, where));
  };
  auto step = [&](Vm& vm, const char* command, const std::string& args) {
    return vm.qmp()
        .Execute(command, args, std::max(deadline - absl::Now(), absl::Seconds(1)))
        .status();
  };

  absl::Status s = step(target, "migrate-set-capabilities",
                        Capabilities({{"events", true}, {"postcopy-ram", postcopy_allowed}}));
  if (s.ok()) s = step(target, "migrate-incoming", absl::StrCat(R"({"uri":")", uri, R"("})"));
  if (s.ok()) {
    s = step(source, "migrate-set-capabilities",
             Capabilities({{"events", true},
                           {"auto-converge", options.auto_converge},
                           {"postcopy-ram", postcopy_allowed}}));
  }
  if (s.ok()) {
    s = step(
        source, "migrate-set-parameters",
        absl::StrCat(R"({"downtime-limit":)", absl::ToInt64Milliseconds(options.downtime_limit),
                     R"(,"max-bandwidth":)", options.max_bandwidth_bytes_per_second, "}"));
  }
  if (s.ok()) s = step(source, "migrate", absl::StrCat(R"({"uri":")", uri, R"("})"));
  if (!s.ok()) return fail(s);

  rapidjson::Document info;
  while (true) {
    absl::StatusOr<std::string> reply = source.qmp().Execute("query-migrate");
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
      // Cancel and wait (briefly) for QEMU to let go of the source.
      source.qmp().Execute("migrate_cancel").status().IgnoreError();
      return fail(absl::DeadlineExceededError(absl::StrCat(
          "not finished after ", absl::FormatDuration(options.timeout), " (", status, ", ",
          IntMember(Member(info, "ram"), "remaining"), " bytes left); cancelled")));
    }
    if (postcopy_allowed && !postcopy && status == "active" &&
        IntMember(Member(info, "ram"), "dirty-sync-count") >= options.postcopy_after_passes) {
      absl::Status switched = step(source, "migrate-start-postcopy", "");
      if (!switched.ok()) return fail(switched);
      postcopy = true;
      VLOG(1) << where << ": switched to postcopy";
    }
    absl::SleepFor(options.poll_interval);
  }

  // The source has sent everything; the target is running once it has loaded it.
  while (true) {
    absl::StatusOr<std::string> state = RunStatus(target);
    if (!state.ok()) return fail(state.status());
    if (*state != "inmigrate") {
      if (was_running && *state != "running") {
        return fail(absl::InternalError(
            absl::StrCat("the target ended in state ", *state, " instead of running")));
      }
      break;
    }
    if (absl::Now() >= deadline) {
      return fail(absl::DeadlineExceededError("the target did not start in time"));
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
