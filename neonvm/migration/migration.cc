#include "neonvm/migration/migration.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"
#include "neonvm/migration/outgoing.h"
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

// A hot-plugged vCPU as a source describes it: the slot (its numeric props), the device's id,
// the CPU type. Only these keys are taken.
struct CpuRequest {
  std::string driver;
  std::string id;
  std::map<std::string, int64_t> props;
};

bool IsCpuProp(const std::string& key) {
  static const std::set<std::string> kProps = {"node-id",   "drawer-id", "book-id",
                                               "socket-id", "die-id",    "cluster-id",
                                               "module-id", "core-id",   "thread-id"};
  return kProps.contains(key);
}

// A device id QEMU takes that can hold nothing else: "cpu3".
bool IsDeviceId(const std::string& id) {
  if (id.empty() || id.size() > 64 || !absl::ascii_isalpha(id[0])) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-' && c != '.') return false;
  }
  return true;
}

absl::StatusOr<CpuRequest> ParseCpuRequest(const std::string& args) {
  rapidjson::Document doc;
  doc.Parse(args.data(), args.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return absl::InvalidArgumentError("a hot-plugged vCPU is not a JSON object");
  }
  CpuRequest r;
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    const std::string key = it->name.GetString();
    if (key == "driver" && it->value.IsString()) {
      r.driver = it->value.GetString();
    } else if (key == "id" && it->value.IsString() && IsDeviceId(it->value.GetString())) {
      r.id = it->value.GetString();
    } else if (IsCpuProp(key) && it->value.IsInt64()) {
      r.props[key] = it->value.GetInt64();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("a hot-plugged vCPU has a field \"", key.substr(0, 32),
                       "\" that is not a CPU slot's (driver, id, *-id numbers)"));
    }
  }
  if (r.id.empty() || r.props.empty()) {
    return absl::InvalidArgumentError("a hot-plugged vCPU without an id or a slot");
  }
  return r;
}

// The device_add arguments for `r` in the QEMU whose query-hotpluggable-cpus answer is `slots`:
// a free slot with exactly r's props, and that slot's own CPU type.
absl::StatusOr<std::string> ArgsForSlot(const CpuRequest& r, const std::string& slots) {
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseReply(slots, "query-hotpluggable-cpus"));
  if (!doc.IsArray()) return absl::InternalError("query-hotpluggable-cpus: not an array");
  std::string wanted;
  for (const auto& [key, value] : r.props) absl::StrAppend(&wanted, " ", key, "=", value);
  for (const Value& slot : doc.GetArray()) {
    const Value& props = Member(slot, "props");
    if (!props.IsObject() || !StringMember(slot, "qom-path").empty()) continue;
    std::map<std::string, int64_t> have;
    for (auto it = props.MemberBegin(); it != props.MemberEnd(); ++it) {
      if (it->value.IsInt64()) have[it->name.GetString()] = it->value.GetInt64();
    }
    if (have != r.props) continue;
    const std::string type = StringMember(slot, "type");
    if (r.driver != type) {
      return absl::InvalidArgumentError(absl::StrCat("the hot-plugged vCPU at", wanted, " is a ",
                                                     r.driver.substr(0, 64), ", the target's a ",
                                                     type));
    }
    return absl::StrCat(R"({"driver":)", qmp::JsonQuote(type), R"(,"id":)", qmp::JsonQuote(r.id),
                        ",", Compact(props).substr(1));
  }
  return absl::InvalidArgumentError(absl::StrCat("the target has no free vCPU slot at", wanted));
}

// Plugs the source's vCPUs into slots the target itself offers, and sets its virtio-mem size.
absl::Status Replay(const std::vector<CpuRequest>& cpus, const Devices& devices, Vm& target) {
  for (const CpuRequest& cpu : cpus) {
    ASSIGN_OR_RETURN(std::string slots, target.qmp().Execute("query-hotpluggable-cpus"));
    ASSIGN_OR_RETURN(std::string args, ArgsForSlot(cpu, slots));
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

constexpr char kTlsClientId[] = "autoscale-migration-tls-client";
constexpr char kTlsServerId[] = "autoscale-migration-tls-server";
constexpr char kTlsAuthzId[] = "autoscale-migration-authz";

// Whether QEMU has the user-created object `id`.
absl::StatusOr<bool> HasObject(qmp::QmpClient& qmp, const std::string& id, absl::Duration timeout) {
  ASSIGN_OR_RETURN(std::string reply, qmp.Execute("qom-list", R"({"path":"/objects"})", timeout));
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseReply(reply, "qom-list"));
  if (!doc.IsArray()) return absl::InternalError("qom-list /objects: not an array");
  for (const Value& entry : doc.GetArray()) {
    if (StringMember(entry, "name") == id) return true;
  }
  return false;
}

// The directory of QEMU's unix QMP socket `qmp_address` ("unix:/path" or "/path"): its runtime
// directory, which the launcher makes the user's QEMU runs as (VmSpec::user). Empty for another
// kind of address.
std::string RuntimeDirOf(const std::string& qmp_address) {
  absl::string_view path = qmp_address;
  absl::ConsumePrefix(&path, "unix:");
  if (!absl::StartsWith(path, "/")) return "";
  return std::filesystem::path(std::string(path)).parent_path().string();
}

// Copies `from` to the new file `to`, mode 0400, owned by `uid`:`gid`.
absl::Status CopyForQemu(const std::string& from, const std::string& to, uid_t uid, gid_t gid) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("migration TLS: cannot read ", from));
  const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const int fd = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("migration TLS: creating ", to));
  const bool ok =
      write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
      fchown(fd, uid, gid) == 0;
  const int err = errno;
  close(fd);
  if (!ok) return absl::ErrnoToStatus(err, absl::StrCat("migration TLS: writing ", to));
  return absl::OkStatus();
}

// Makes QEMU's tls-creds-x509 object `id` for `endpoint` from the files in `dir` (MakeTlsDir) as
// they are now, replacing the one an earlier migration made: QEMU reads the files when the object
// is made, so a certificate rotated since is used from the next migration on. QEMU reads them as
// the user it runs as, who may not read the node's key (it dropped root): the files it needs are
// copied into a new directory of that user's (0700, the files 0400; the user is the owner of
// QEMU's runtime directory), and removed once the object holds them.
absl::Status AddTlsCreds(qmp::QmpClient& qmp, const char* id, const std::string& dir,
                         const std::string& endpoint, absl::Duration timeout) {
  const std::string what = absl::StrCat("QEMU's migration TLS credentials from ", dir);
  ASSIGN_OR_RETURN(bool has, HasObject(qmp, id, timeout));
  if (has) {
    RETURN_IF_ERROR(Annotate(
        qmp.Execute("object-del", absl::StrCat(R"({"id":")", id, R"("})"), timeout).status(),
        absl::StrCat(what, ": removing the earlier ones")));
  }
  std::string load_dir = dir;
  std::string staged;
  const std::string runtime = RuntimeDirOf(qmp.address());
  struct stat owner;
  if (!runtime.empty() && stat(runtime.c_str(), &owner) == 0) {
    // Under /tmp, which QEMU's user can always reach (the runtime directory's parents may be
    // root's alone, as a test cluster's are).
    std::string tmpl = "/tmp/neonvm-tls.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::ErrnoToStatus(errno, absl::StrCat(what, ": mkdtemp ", tmpl));
    }
    staged = load_dir = tmpl;
  }
  absl::Status s;
  if (!staged.empty()) {
    if (chown(staged.c_str(), owner.st_uid, owner.st_gid) != 0) {
      s = absl::ErrnoToStatus(errno, absl::StrCat(what, ": chown ", staged));
    }
    for (const std::string& name :
         {std::string("ca-cert.pem"), endpoint + "-cert.pem", endpoint + "-key.pem"}) {
      if (!s.ok()) break;
      s = CopyForQemu(absl::StrCat(dir, "/", name), absl::StrCat(staged, "/", name), owner.st_uid,
                      owner.st_gid);
    }
  }
  if (s.ok()) {
    s = Annotate(qmp.Execute("object-add",
                             absl::StrCat(R"({"qom-type":"tls-creds-x509","id":")", id,
                                          R"(","dir":)", qmp::JsonQuote(load_dir),
                                          R"(,"endpoint":")", endpoint, R"(","verify-peer":true})"),
                             timeout)
                     .status(),
                 what);
  }
  if (!staged.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(staged, ignored);
  }
  return s;
}

class QmpSource final : public Source {
 public:
  QmpSource(qmp::QmpClient& qmp, const launcher::VmSpec& spec) : qmp_(qmp), spec_(spec) {}

  std::string name() const override {
    return absl::StrCat("VM ", spec_.name, " (", qmp_.address(), ")");
  }

  absl::StatusOr<std::string> RunState(absl::Duration timeout) override {
    ASSIGN_OR_RETURN(std::string reply, qmp_.Execute("query-status", {}, timeout));
    ASSIGN_OR_RETURN(rapidjson::Document doc, ParseReply(reply, "query-status"));
    return StringMember(doc, "status");
  }

  absl::StatusOr<bool> KvmEnabled(absl::Duration timeout) override {
    ASSIGN_OR_RETURN(std::string reply, qmp_.Execute("query-kvm", {}, timeout));
    ASSIGN_OR_RETURN(rapidjson::Document doc, ParseReply(reply, "query-kvm"));
    const Value& enabled = Member(doc, "enabled");
    if (!enabled.IsBool()) return absl::InternalError("query-kvm: no \"enabled\": " + reply);
    return enabled.GetBool();
  }

  absl::StatusOr<Devices> CaptureDevices(absl::Duration) override {
    return migration::CaptureDevices(qmp_, spec_);
  }

  absl::Status Configure(const MigrationOptions& options, absl::Duration timeout) override {
    RETURN_IF_ERROR(qmp_.Execute("migrate-set-capabilities",
                                 Capabilities({{"events", true},
                                               {"auto-converge", options.auto_converge},
                                               {"postcopy-ram", options.allow_postcopy}}),
                                 timeout)
                        .status());
    std::string tls = R"(,"tls-creds":"","tls-hostname":"")";
    if (!options.tls_dir.empty()) {
      RETURN_IF_ERROR(AddTlsCreds(qmp_, kTlsClientId, options.tls_dir, "client", timeout));
      tls = absl::StrCat(R"(,"tls-creds":")", kTlsClientId, R"(","tls-hostname":)",
                         qmp::JsonQuote(options.tls_hostname));
    }
    // Parameters stay with the QEMU process: each migration sets all of them.
    return qmp_
        .Execute(
            "migrate-set-parameters",
            absl::StrCat(R"({"downtime-limit":)", absl::ToInt64Milliseconds(options.downtime_limit),
                         R"(,"max-bandwidth":)", options.max_bandwidth_bytes_per_second, tls, "}"),
            timeout)
        .status();
  }

  absl::Status Start(const std::string& uri, absl::Duration timeout) override {
    RETURN_IF_ERROR(CheckTargetUri(uri));
    return qmp_.Execute("migrate", absl::StrCat(R"({"uri":)", qmp::JsonQuote(uri), "}"), timeout)
        .status();
  }

  absl::StatusOr<Progress> Query(absl::Duration timeout) override {
    ASSIGN_OR_RETURN(std::string reply, qmp_.Execute("query-migrate", {}, timeout));
    ASSIGN_OR_RETURN(rapidjson::Document info, ParseReply(reply, "query-migrate"));
    Progress p;
    p.status = StringMember(info, "status");
    p.error = StringMember(info, "error-desc");
    const Value& ram = Member(info, "ram");
    p.passes = IntMember(ram, "dirty-sync-count");
    p.remaining_bytes = IntMember(ram, "remaining");
    p.stats.total_time = absl::Milliseconds(IntMember(info, "total-time"));
    p.stats.downtime = absl::Milliseconds(IntMember(info, "downtime"));
    p.stats.setup_time = absl::Milliseconds(IntMember(info, "setup-time"));
    p.stats.transferred_bytes = IntMember(ram, "transferred");
    p.stats.ram_bytes = IntMember(ram, "total");
    p.stats.passes = p.passes;
    return p;
  }

  absl::Status StartPostcopy(absl::Duration timeout) override {
    return qmp_.Execute("migrate-start-postcopy", {}, timeout).status();
  }
  absl::Status Cancel(absl::Duration timeout) override {
    return qmp_.Execute("migrate_cancel", {}, timeout).status();
  }
  absl::Status Resume(absl::Duration timeout) override {
    return qmp_.Execute("cont", {}, timeout).status();
  }
  absl::Status Quit(absl::Duration timeout) override {
    return qmp_.Execute("quit", {}, timeout).status();
  }

 private:
  qmp::QmpClient& qmp_;
  const launcher::VmSpec spec_;
};

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

absl::StatusOr<std::unique_ptr<Vm>> StartIncoming(launcher::VmSpec spec, const Devices& devices,
                                                  const launcher::StartOptions& options) {
  spec.incoming = true;
  // The devices may come from another node's agent: checked before any QEMU starts, and each
  // vCPU plugged only into a slot the target's QEMU offers (Replay).
  std::vector<CpuRequest> cpus;
  for (const std::string& args : devices.cpu_device_add_args) {
    absl::StatusOr<CpuRequest> cpu = ParseCpuRequest(args);
    if (!cpu.ok()) return Annotate(cpu.status(), "VM " + spec.name);
    cpus.push_back(*std::move(cpu));
  }
  if (devices.virtio_mem_requested_bytes) {
    const int64_t bytes = *devices.virtio_mem_requested_bytes;
    const int64_t most =
        int64_t{spec.memory_slots_max - spec.memory_slots_min} * spec.memory_slot_bytes;
    if (bytes < 0 || bytes > most) {
      return absl::InvalidArgumentError(absl::StrCat("VM ", spec.name, ": virtio-mem size ", bytes,
                                                     " is beyond its spec (0 to ", most, ")"));
    }
  }
  // What the source has now is replayed below, not taken from its original spec.
  spec.cpus_use = spec.cpus_min;
  spec.memory_slots_use = spec.memory_slots_min;
  // Both may run on one host at once, so the target cannot have the source's host ports.
  for (launcher::HostForward& f : spec.host_forwards) f.host_port = 0;
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> target, Vm::Start(spec, options));
  RETURN_IF_ERROR(Annotate(
      Replay(cpus, devices, *target),
      absl::StrCat("replaying the devices of VM ", spec.name, " on its migration target")));
  return target;
}

absl::StatusOr<std::unique_ptr<Vm>> StartTarget(Vm& source, const launcher::StartOptions& options) {
  ASSIGN_OR_RETURN(Devices devices, CaptureDevices(source.qmp(), source.spec()));
  launcher::VmSpec spec = source.spec();
  // The target's quota is the source's as it is now (resizes changed it since the start), so
  // the VM gets no more CPU on arrival than its permit.
  if (source.cpu_milli() > 0) spec.cpu_milli = source.cpu_milli();
  return StartIncoming(std::move(spec), devices, options);
}

absl::StatusOr<std::string> Listen(Vm& target, bool allow_postcopy, const std::string& tcp_address,
                                   const IncomingTls& tls) {
  const std::string uri = tcp_address.empty()
                              ? absl::StrCat("unix:", target.runtime_dir(), "/migration.sock")
                              : absl::StrCat("tcp:", tcp_address, ":0");
  RETURN_IF_ERROR(target.qmp()
                      .Execute("migrate-set-capabilities",
                               Capabilities({{"events", true}, {"postcopy-ram", allow_postcopy}}))
                      .status());
  if (!tls.dir.empty()) {
    const absl::Duration timeout = absl::Seconds(10);
    RETURN_IF_ERROR(AddTlsCreds(target.qmp(), kTlsServerId, tls.dir, "server", timeout));
    std::string authz;
    if (!tls.source_dn.empty()) {
      // QEMU checks the client certificate's distinguished name against this list.
      RETURN_IF_ERROR(
          target.qmp()
              .Execute("object-add",
                       absl::StrCat(R"({"qom-type":"authz-simple","id":")", kTlsAuthzId,
                                    R"(","identity":)", qmp::JsonQuote(tls.source_dn), "}"),
                       timeout)
              .status());
      authz = absl::StrCat(R"(,"tls-authz":")", kTlsAuthzId, R"(")");
    }
    RETURN_IF_ERROR(
        target.qmp()
            .Execute("migrate-set-parameters",
                     absl::StrCat(R"({"tls-creds":")", kTlsServerId, R"(")", authz, "}"), timeout)
            .status());
  }
  RETURN_IF_ERROR(
      target.qmp().Execute("migrate-incoming", absl::StrCat(R"({"uri":")", uri, R"("})")).status());
  if (tcp_address.empty()) return uri;
  // Port 0: QEMU picked one; query-migrate names it ("socket-address": [{"port": "NNNN", ...}]).
  ASSIGN_OR_RETURN(std::string reply, target.qmp().Execute("query-migrate"));
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseReply(reply, "query-migrate"));
  const Value& addresses = Member(doc, "socket-address");
  if (!addresses.IsArray() || addresses.Empty() || !addresses[0].IsObject()) {
    return absl::InternalError(
        absl::StrCat("VM ", target.name(), ": query-migrate names no listening address: ", reply));
  }
  std::string port = StringMember(addresses[0], "port");
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number <= 0 || port_number > 65535) {
    return absl::InternalError(
        absl::StrCat("VM ", target.name(), ": query-migrate: bad listening port in: ", reply));
  }
  return absl::StrCat("tcp:", tcp_address, ":", port_number);
}

absl::Status MakeTlsDir(const std::string& dir, const std::string& cert, const std::string& key,
                        const std::string& ca) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("making ", dir, ": ", ec.message()));
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  if (ec) return absl::InternalError(absl::StrCat("chmod 0700 ", dir, ": ", ec.message()));
  const std::pair<const char*, const std::string*> links[] = {{"ca-cert.pem", &ca},
                                                              {"server-cert.pem", &cert},
                                                              {"server-key.pem", &key},
                                                              {"client-cert.pem", &cert},
                                                              {"client-key.pem", &key}};
  for (const auto& [name, target] : links) {
    const std::filesystem::path link = std::filesystem::path(dir) / name;
    const std::filesystem::path to = std::filesystem::absolute(*target, ec);
    if (ec || !std::filesystem::exists(to)) {
      return absl::NotFoundError(absl::StrCat("migration TLS: no file ", *target));
    }
    std::filesystem::remove(link, ec);
    std::filesystem::create_symlink(to, link, ec);
    if (ec) return absl::InternalError(absl::StrCat("linking ", link.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status AnnounceSelf(Vm& vm) {
  // QEMU 10's defaults for a migration's announcement.
  return Annotate(vm.qmp()
                      .Execute("announce-self", R"({"initial":50,"max":550,"rounds":5,"step":100})")
                      .status(),
                  absl::StrCat("VM ", vm.name(), ": announce-self"));
}

absl::Status CheckTargetUri(std::string_view target_uri) {
  absl::string_view uri(target_uri.data(), target_uri.size());
  auto refused = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "migration target address \"",
        absl::CEscape(absl::string_view(target_uri.data(), target_uri.size()).substr(0, 200)),
        "\" is not unix:/PATH or tcp:HOST:PORT; refusing to send the VM there"));
  };
  // Characters QEMU's address parsers give no meaning to (no ',' options, no spaces).
  auto plain = [](absl::string_view s, absl::string_view extra) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
             extra.find(c) != absl::string_view::npos;
    });
  };
  if (absl::ConsumePrefix(&uri, "unix:")) {
    return uri.size() > 1 && uri[0] == '/' && plain(uri, "/._-") ? absl::OkStatus() : refused();
  }
  if (absl::ConsumePrefix(&uri, "tcp:")) {
    const size_t colon = uri.rfind(':');
    if (colon == absl::string_view::npos) return refused();
    absl::string_view host = uri.substr(0, colon);
    int port = 0;
    if (!absl::SimpleAtoi(uri.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return refused();
    }
    if (absl::ConsumePrefix(&host, "[")) {
      if (!absl::ConsumeSuffix(&host, "]")) return refused();
      return plain(host, ":.") ? absl::OkStatus() : refused();
    }
    return plain(host, ".-") ? absl::OkStatus() : refused();
  }
  return refused();
}

std::unique_ptr<Source> NewQmpSource(qmp::QmpClient& qmp, const launcher::VmSpec& spec) {
  return std::make_unique<QmpSource>(qmp, spec);
}

absl::Status AwaitIncoming(Vm& target, bool expect_running, absl::Duration timeout) {
  // The source has sent everything; the target is running once it has loaded it.
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    ASSIGN_OR_RETURN(std::string state, RunStatus(target));
    if (state != "inmigrate") {
      // Arrived: running, or paused if the source was.
      // A source never started (-S) hands its "prelaunch" over.
      if (state == "running" || (!expect_running && (state == "paused" || state == "prelaunch"))) {
        return absl::OkStatus();
      }
      return absl::InternalError(absl::StrCat("the migration target of VM ", target.name(),
                                              " ended in state ", state, " instead of ",
                                              expect_running ? "running" : "running or paused"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the migration target of VM ", target.name(), " did not start in time"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::StatusOr<MigrationStats> Migrate(Vm& source, Vm& target, const MigrationOptions& options) {
  const std::string where = absl::StrCat("migrating VM ", source.name(), " (QEMU ", source.pid(),
                                         " to ", target.pid(), ")");
  absl::StatusOr<std::string> uri = Listen(target, options.allow_postcopy, options.listen_address);
  if (!uri.ok()) {
    absl::Status stopped = target.Stop(absl::Seconds(2));
    if (!stopped.ok()) LOG(WARNING) << stopped;
    return Annotate(uri.status(), where);
  }
  std::unique_ptr<Source> sender = NewQmpSource(source.qmp(), source.spec());
  LocalTarget local(target, *uri, std::max(options.timeout, absl::Seconds(1)));
  MigrationResult r = RunMigration(*sender, local, options);
  switch (r.outcome) {
    case Outcome::kMigrated:
      break;
    case Outcome::kStayed:
      return r.error;
    case Outcome::kLost:
      return absl::Status(r.error.code(), absl::StrCat(r.error.message(),
                                                       "; the VM is lost: the failure came after "
                                                       "the point of no return"));
    case Outcome::kInterrupted:
      return absl::CancelledError(where + ": interrupted");
  }
  absl::Status stopped = source.Stop();  // it quit: reap it
  if (!stopped.ok()) LOG(WARNING) << where << ": stopping the source: " << stopped;
  // The segment must learn the VM's new place at once, or its peers' frames go to the old host
  // until the bridges forget it (minutes).
  if (!target.spec().taps.empty()) {
    absl::Status announced = AnnounceSelf(target);
    if (!announced.ok()) LOG(WARNING) << where << ": " << announced;
  }
  return r.stats;
}

absl::StatusOr<Migrated> LiveMigrate(Vm& source, const MigrationOptions& options) {
  Migrated m;
  ASSIGN_OR_RETURN(m.vm, StartTarget(source));
  ASSIGN_OR_RETURN(m.stats, Migrate(source, *m.vm, options));
  return m;
}

}  // namespace autoscale::neonvm::migration
