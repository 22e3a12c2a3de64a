#include "neonvm/hotplug/resizer.h"

#include <algorithm>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autoscale/base/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace autoscale::neonvm::hotplug {
namespace {

using rapidjson::Value;

constexpr char kPeripheral[] = "/machine/peripheral/";
// ACPI _OST source event and status codes, as QEMU reports them in ACPI_DEVICE_OST.
constexpr int kOstInsert = 1;
constexpr int kOstEject = 3;
constexpr int kOstSuccess = 0;
constexpr int kOstInProgress = 0x84;

std::string Bytes(int64_t bytes) {
  if (bytes == 0) return "0 bytes";
  if (bytes % (int64_t{1} << 30) == 0) return absl::StrCat(bytes >> 30, " GiB");
  if (bytes % (int64_t{1} << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  return absl::StrCat(bytes, " bytes");
}

absl::StatusOr<rapidjson::Document> Parse(const std::string& json, std::string_view what) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError()) {
    return absl::InternalError(
        absl::StrCat("unreadable reply to ", absl::string_view(what.data(), what.size())));
  }
  return doc;
}

std::string Compact(const Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

int64_t IntMember(const Value& object, const char* name, int64_t fallback = -1) {
  if (!object.IsObject()) return fallback;
  auto it = object.FindMember(name);
  return it != object.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : fallback;
}

std::string StringMember(const Value& object, const char* name) {
  if (!object.IsObject()) return "";
  auto it = object.FindMember(name);
  return it != object.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

// The "info" of an ACPI_DEVICE_OST event.
struct Ost {
  std::string device;  // absent for the final eject report of a CPU
  std::string slot;
  int source = -1;
  int status = -1;
};

std::optional<Ost> ParseOst(const qmp::QmpEvent& e) {
  rapidjson::Document doc;
  doc.Parse(e.data.data(), e.data.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("info")) return std::nullopt;
  const Value& info = doc["info"];
  return Ost{StringMember(info, "device"), StringMember(info, "slot"),
             static_cast<int>(IntMember(info, "source")),
             static_cast<int>(IntMember(info, "status"))};
}

}  // namespace

std::string ToString(const VmSize& size) {
  return absl::StrCat(size.cpus, size.cpus == 1 ? " CPU, " : " CPUs, ", Bytes(size.memory_bytes));
}

// One entry of query-hotpluggable-cpus.
struct VmResizer::Cpu {
  int core_id = 0;
  std::string type;
  std::string props;     // the "props" object, JSON
  std::string qom_path;  // empty when the slot is free
  // The device id of a CPU added as a device ("cpu3"); empty for boot CPUs and free slots.
  std::string DeviceId() const {
    return absl::StartsWith(qom_path, kPeripheral) ? qom_path.substr(sizeof(kPeripheral) - 1) : "";
  }
};

VmResizer::VmResizer(qmp::QmpClient& qmp, const launcher::VmSpec& spec, VmResizerOptions options)
    : qmp_(qmp), spec_(spec), options_(options) {}

std::string VmResizer::Where() const { return absl::StrCat("resizing VM ", spec_.name); }

absl::StatusOr<std::vector<VmResizer::Cpu>> VmResizer::QueryCpus() {
  ASSIGN_OR_RETURN(std::string reply, qmp_.Execute("query-hotpluggable-cpus"));
  ASSIGN_OR_RETURN(rapidjson::Document doc, Parse(reply, "query-hotpluggable-cpus"));
  if (!doc.IsArray()) return absl::InternalError("query-hotpluggable-cpus: not an array");
  std::vector<Cpu> cpus;
  for (const Value& entry : doc.GetArray()) {
    if (!entry.IsObject() || !entry.HasMember("props") || !entry["props"].IsObject()) {
      return absl::InternalError(
          absl::StrCat("query-hotpluggable-cpus: bad entry ", Compact(entry)));
    }
    const Value& props = entry["props"];
    Cpu cpu;
    cpu.core_id = static_cast<int>(IntMember(props, "core-id"));
    cpu.type = StringMember(entry, "type");
    cpu.props = Compact(props);
    cpu.qom_path = StringMember(entry, "qom-path");
    cpus.push_back(std::move(cpu));
  }
  std::sort(cpus.begin(), cpus.end(),
            [](const Cpu& a, const Cpu& b) { return a.core_id < b.core_id; });
  return cpus;
}

absl::StatusOr<int64_t> VmResizer::PluggedMemory() {
  ASSIGN_OR_RETURN(
      std::string reply,
      qmp_.Execute("qom-get", absl::StrCat(R"({"path":")", kPeripheral, launcher::kVirtioMemId,
                                           R"(","property":"size"})")));
  int64_t size = 0;
  if (!absl::SimpleAtoi(reply, &size)) {
    return absl::InternalError(absl::StrCat("virtio-mem size is not a number: ", reply));
  }
  return size;
}

absl::StatusOr<VmSize> VmResizer::Current() {
  ASSIGN_OR_RETURN(std::vector<Cpu> cpus, QueryCpus());
  VmSize size;
  size.cpus = static_cast<int>(
      std::count_if(cpus.begin(), cpus.end(), [](const Cpu& c) { return !c.qom_path.empty(); }));
  ASSIGN_OR_RETURN(std::string summary, qmp_.Execute("query-memory-size-summary"));
  ASSIGN_OR_RETURN(rapidjson::Document doc, Parse(summary, "query-memory-size-summary"));
  size.memory_bytes = IntMember(doc, "base-memory", 0);
  if (spec_.memory_slots_max > spec_.memory_slots_min) {
    ASSIGN_OR_RETURN(int64_t plugged, PluggedMemory());
    size.memory_bytes += plugged;
  }
  return size;
}

absl::StatusOr<VmSize> VmResizer::Resize(const VmSize& target) {
  return Resize(target, target.cpus * 1000);
}

absl::StatusOr<VmSize> VmResizer::Resize(const VmSize& target, int cpu_milli) {
  absl::MutexLock lock(&resize_mu_);
  absl::Time deadline = absl::Now() + options_.timeout;
  const int64_t slot = spec_.memory_slot_bytes;
  if (target.cpus < spec_.cpus_min || target.cpus > spec_.cpus_max) {
    return absl::InvalidArgumentError(absl::StrCat(Where(), " to ", ToString(target), ": ",
                                                   target.cpus, " CPUs is outside the spec's ",
                                                   spec_.cpus_min, "..", spec_.cpus_max));
  }
  if (target.memory_bytes % slot != 0) {
    return absl::InvalidArgumentError(absl::StrCat(Where(), " to ", ToString(target), ": ",
                                                   "memory is not a whole number of ", Bytes(slot),
                                                   " slots"));
  }
  if (target.memory_bytes < spec_.memory_slots_min * slot ||
      target.memory_bytes > spec_.memory_slots_max * slot) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(), " to ", ToString(target), ": memory is outside the spec's ",
        Bytes(spec_.memory_slots_min * slot), "..", Bytes(spec_.memory_slots_max * slot)));
  }
  if (cpu_milli <= (target.cpus - 1) * 1000 || cpu_milli > target.cpus * 1000) {
    return absl::InvalidArgumentError(absl::StrCat(Where(), " to ", ToString(target), ": ",
                                                   cpu_milli, "m CPU needs ",
                                                   (cpu_milli + 999) / 1000, " vCPUs"));
  }
  // The quota follows the vCPUs up and leads them down.
  bool growing = false;
  absl::Status s;
  if (options_.set_cpu_limit) {
    absl::StatusOr<std::vector<Cpu>> cpus = QueryCpus();
    s = cpus.status();
    if (s.ok()) {
      growing = target.cpus > std::count_if(cpus->begin(), cpus->end(),
                                            [](const Cpu& c) { return !c.qom_path.empty(); });
      if (!growing) s = options_.set_cpu_limit(cpu_milli);
    }
  }
  if (s.ok()) s = ResizeCpus(target.cpus, deadline);
  if (s.ok() && growing) s = options_.set_cpu_limit(cpu_milli);
  if (s.ok()) s = ResizeMemory(target.memory_bytes, deadline);
  if (!s.ok()) {
    absl::StatusOr<VmSize> now = Current();
    std::string reached = now.ok() ? ToString(*now) : std::string(now.status().message());
    return absl::Status(s.code(), absl::StrCat(Where(), " to ", ToString(target), ": ", s.message(),
                                               " (now ", reached, ")"));
  }
  return target;
}

absl::Status VmResizer::ResizeCpus(int target, absl::Time deadline) {
  ASSIGN_OR_RETURN(std::vector<Cpu> cpus, QueryCpus());
  int plugged = static_cast<int>(
      std::count_if(cpus.begin(), cpus.end(), [](const Cpu& c) { return !c.qom_path.empty(); }));
  // Add into the lowest free core ids, remove from the highest.
  for (const Cpu& cpu : cpus) {
    if (plugged >= target) break;
    if (!cpu.qom_path.empty()) continue;
    RETURN_IF_ERROR(AddCpu(cpu, deadline));
    ++plugged;
  }
  for (auto it = cpus.rbegin(); it != cpus.rend() && plugged > target; ++it) {
    if (it->DeviceId().empty()) continue;
    RETURN_IF_ERROR(RemoveCpu(*it, deadline));
    --plugged;
  }
  if (plugged > target) {
    return absl::FailedPreconditionError(
        absl::StrCat("only CPUs added as devices can be removed, and none is left"));
  }
  return absl::OkStatus();
}

absl::Status VmResizer::AddCpu(const Cpu& cpu, absl::Time deadline) {
  std::string id = absl::StrCat("cpu", cpu.core_id);
  // {"driver": type, "id": id, <props>}
  std::string args = absl::StrCat(R"({"driver":)", qmp::JsonQuote(cpu.type), R"(,"id":)",
                                  qmp::JsonQuote(id), ",", cpu.props.substr(1));
  qmp::EventQueue ost(qmp_, {"ACPI_DEVICE_OST"});
  RETURN_IF_ERROR(qmp_.Execute("device_add", args, deadline - absl::Now()).status());
  if (!options_.guest_acknowledges_cpus) return absl::OkStatus();
  while (true) {
    absl::StatusOr<qmp::QmpEvent> e = ost.Next(deadline - absl::Now());
    if (!e.ok()) {
      if (e.status().code() != absl::StatusCode::kDeadlineExceeded) return e.status();
      return absl::DeadlineExceededError(
          absl::StrCat(id, " is plugged, but the guest did not acknowledge it in time"));
    }
    std::optional<Ost> info = ParseOst(*e);
    if (!info || info->device != id || info->source != kOstInsert) continue;
    if (info->status == kOstSuccess) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrFormat("the guest rejected %s (_OST status 0x%x)", id, info->status));
  }
}

absl::Status VmResizer::RemoveCpu(const Cpu& cpu, absl::Time deadline) {
  std::string id = cpu.DeviceId();
  // The eject report names the slot only; with one socket and one thread per core the slot is
  // the core id. The in-progress report, which names the device, confirms it.
  std::string slot = absl::StrCat(cpu.core_id);
  qmp::EventQueue ost(qmp_, {"ACPI_DEVICE_OST"});
  RETURN_IF_ERROR(qmp_.Execute("device_del", absl::StrCat(R"({"id":)", qmp::JsonQuote(id), "}"),
                               deadline - absl::Now())
                      .status());
  bool ejected = false;
  while (true) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "removing ", id, ": ",
          ejected ? "ejected but still listed by QEMU" : "the guest did not eject it", " in time"));
    }
    absl::StatusOr<qmp::QmpEvent> e =
        ost.Next(std::min(options_.poll_interval * 10, deadline - absl::Now()));
    if (!e.ok() && e.status().code() != absl::StatusCode::kDeadlineExceeded) return e.status();
    if (e.ok()) {
      std::optional<Ost> info = ParseOst(*e);
      if (!info || info->source != kOstEject) continue;
      if (info->device == id && !info->slot.empty()) slot = info->slot;
      if (info->device != id && (!info->device.empty() || info->slot != slot)) continue;
      if (info->status == kOstInProgress) continue;
      if (info->status != kOstSuccess) {
        return absl::FailedPreconditionError(
            absl::StrFormat("the guest could not eject %s (_OST status 0x%x)", id, info->status));
      }
      ejected = true;
    }
    if (!ejected) continue;
    ASSIGN_OR_RETURN(std::vector<Cpu> cpus, QueryCpus());
    bool present = std::any_of(cpus.begin(), cpus.end(),
                               [&](const Cpu& c) { return c.qom_path == cpu.qom_path; });
    if (!present) return absl::OkStatus();
  }
}

absl::Status VmResizer::ResizeMemory(int64_t target, absl::Time deadline) {
  int64_t base = spec_.memory_slots_min * spec_.memory_slot_bytes;
  int64_t requested = target - base;
  if (spec_.memory_slots_max == spec_.memory_slots_min) return absl::OkStatus();
  std::string path = absl::StrCat(kPeripheral, launcher::kVirtioMemId);
  ASSIGN_OR_RETURN(std::string current,
                   qmp_.Execute("qom-get", absl::StrCat(R"({"path":")", path,
                                                        R"(","property":"requested-size"})")));
  if (current != absl::StrCat(requested)) {
    RETURN_IF_ERROR(
        qmp_.Execute("qom-set",
                     absl::StrCat(R"({"path":")", path, R"(","property":"requested-size","value":)",
                                  requested, "}"))
            .status());
  }
  while (true) {
    ASSIGN_OR_RETURN(int64_t plugged, PluggedMemory());
    if (plugged == requested) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      // Take the request back to what is plugged. Left standing, the guest would go on plugging
      // (or unplugging) after the caller was told this size: the ledger would book less than the
      // VM holds, and another VM could be given the difference. Whatever the guest plugs between
      // the read and this write it unplugs again; the caller reads the size afterwards
      // (Current), and the larger value it may see then is what it must book until it settles.
      RETURN_IF_ERROR(
          qmp_.Execute("qom-set",
                       absl::StrCat(R"({"path":")", path,
                                    R"(","property":"requested-size","value":)", plugged, "}"))
              .status());
      return absl::DeadlineExceededError(absl::StrCat(
          "virtio-mem ", launcher::kVirtioMemId, " has ", Bytes(plugged), " plugged of ",
          Bytes(requested),
          " requested when the time ran out (does the guest load virtio_mem?); the request is "
          "taken back to what is plugged"));
    }
    absl::SleepFor(options_.poll_interval);
  }
}

}  // namespace autoscale::neonvm::hotplug
