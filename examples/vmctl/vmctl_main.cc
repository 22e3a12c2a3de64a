// vmctl: starts, inspects and stops one VM by hand, from a launch spec file (the agent config's
// VmLaunchSpec, as JSON or text format). Flags and wiring; the VM is neonvm/launcher's.
//
//   vmctl --spec=pg.json --runtime_dir=/run/neonvm/pg check   # validate only
//   vmctl --spec=pg.json --runtime_dir=/run/neonvm/pg start &  # runs until stop or a signal
//   vmctl --runtime_dir=/run/neonvm/pg inspect                  # state, vCPUs, memory, disks
//   vmctl --runtime_dir=/run/neonvm/pg stop                     # quit QEMU, wait for the exit
//
// `start` stays in the foreground and owns QEMU: SIGINT or SIGTERM stop the VM through QMP quit
// (and QEMU dies with it, unless QEMU dropped root: --qemu_user, neonvm/launcher/vm.h). Run as
// root, QEMU drops to --qemu_user and the runtime directory becomes that user's. `inspect` talks to
// the VM's second QMP socket, the one an agent would use; it fails while an agent holds it. Exit
// codes: 0 done, 1 an error, 2 a usage error.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "autoscale/agent/vm_driver.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/base/init.h"
#include "autoscale/base/owned_file.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/rpc/monitor/agent_token.h"
#include "neonvm/launcher/vm.h"
#include "neonvm/qmp/qmp_client.h"
#include "rapidjson/document.h"

ABSL_FLAG(std::string, spec, "", "start, check: the VM's launch spec (.json or .textproto)");
ABSL_FLAG(std::string, runtime_dir, "",
          "The VM's directory: QMP and serial sockets, QEMU's log, vmctl.pid (under 90 bytes: "
          "unix socket paths)");
ABSL_FLAG(bool, resume, true, "start: run the guest at once (false: stay paused, QMP cont)");
ABSL_FLAG(std::string, qemu_user, "",
          "start: the user QEMU drops root to (\"\": autoscale-qemu, made by scripts/setup, "
          "when vmctl runs as root; none otherwise); \"root\" keeps QEMU root (a warning)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(20), "start: QEMU up; stop: QEMU gone");

namespace {

using autoscale::neonvm::launcher::Vm;
using autoscale::neonvm::launcher::VmSpec;

constexpr char kUsage[] =
    "Usage: vmctl [--spec=FILE] --runtime_dir=DIR COMMAND\n"
    "Commands: check (validate the spec), start (run the VM in the foreground until stop or a "
    "signal), inspect (state, vCPUs, memory, disks), stop (quit the VM that start runs)";

std::string PidFile(const std::string& dir) { return dir + "/vmctl.pid"; }

absl::StatusOr<VmSpec> LoadSpec() {
  const std::string path = absl::GetFlag(FLAGS_spec);
  if (path.empty()) return absl::InvalidArgumentError("--spec is required");
  autoscale::api::v1::VmLaunchSpec proto;
  RETURN_IF_ERROR(autoscale::ReadProtoFile(path, proto));
  VmSpec spec = autoscale::agent::SpecFromProto(proto);
  spec.user = absl::GetFlag(FLAGS_qemu_user);
  RETURN_IF_ERROR(autoscale::Annotate(autoscale::neonvm::launcher::Validate(spec), path));
  return spec;
}

absl::Status Start(const std::string& dir) {
  ASSIGN_OR_RETURN(VmSpec spec, LoadSpec());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir, ": ", ec.message()));
  if (std::ifstream(PidFile(dir)).good()) {
    return absl::FailedPreconditionError(absl::StrCat(
        PidFile(dir), " exists: another vmctl runs this directory (or was killed: remove it)"));
  }
  autoscale::neonvm::launcher::StartOptions options;
  options.runtime_dir = dir;
  options.timeout = absl::GetFlag(FLAGS_timeout);
  // A fresh agent token for every boot: the guest's monitor admits only the agent that presents
  // it (the agent config's agentTokenFile names the file).
  spec.agent_token = autoscale::rpc::monitor::NewAgentToken();
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, Vm::Start(spec, options));
  if (absl::GetFlag(FLAGS_resume)) RETURN_IF_ERROR(vm->Resume());
  // QEMU's user owns the directory now: a new file, through no link it could have planted.
  RETURN_IF_ERROR(autoscale::WriteNewFile(PidFile(dir), absl::StrCat(getpid(), "\n"), 0644));

  std::cout << "VM " << spec.name << ": QEMU pid " << vm->pid() << ", "
            << (absl::GetFlag(FLAGS_resume) ? "running" : "paused") << "\n"
            << "qmp: " << vm->qmp_path() << "\nagent qmp: " << vm->agent_qmp_path()
            << "\nserial: " << vm->serial_path() << "\nlog: " << vm->log_path() << "\n"
            << "agent token: " << dir << "/" << autoscale::neonvm::launcher::kAgentTokenFile
            << "\n";
  for (const auto& f : spec.host_forwards) {
    absl::StatusOr<int> port = vm->HostPort(f.guest_port);
    if (port.ok()) std::cout << "port: 127.0.0.1:" << *port << " -> guest " << f.guest_port << "\n";
  }
  for (size_t i = 0; i < spec.taps.size(); ++i) {
    std::cout << "tap: " << vm->tap_names()[i] << " on " << spec.taps[i].bridge << ", mac "
              << autoscale::neonvm::launcher::TapMac(spec, i) << "\n";
  }
  std::cout.flush();

  // SIGINT and SIGTERM are blocked (main); wait for one, or for QEMU to end on its own.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  const timespec poll = {0, 200 * 1000 * 1000};
  absl::Status result;
  while (true) {
    int sig = sigtimedwait(&stop_signals, nullptr, &poll);
    if (sig > 0) {
      result = vm->Stop(absl::GetFlag(FLAGS_timeout));
      std::cout << "VM " << spec.name << ": stopped (" << strsignal(sig) << ")\n";
      break;
    }
    if (!vm->Running()) {
      result = absl::AbortedError(absl::StrCat("VM ", spec.name, ": QEMU ", vm->ExitDescription(),
                                               ": ", vm->LogTail(1000)));
      break;
    }
  }
  std::filesystem::remove(PidFile(dir), ec);
  return result;
}

absl::StatusOr<rapidjson::Document> Query(autoscale::neonvm::qmp::QmpClient& qmp,
                                          const std::string& command) {
  ASSIGN_OR_RETURN(std::string reply, qmp.Execute(command));
  rapidjson::Document doc;
  doc.Parse(reply.c_str());
  if (doc.HasParseError()) {
    return absl::InternalError(absl::StrCat(command, ": QEMU's reply is not JSON: ", reply));
  }
  return doc;
}

absl::Status Inspect(const std::string& dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<autoscale::neonvm::qmp::QmpClient> qmp,
                   autoscale::neonvm::qmp::QmpClient::Connect("unix:" + dir + "/agent.qmp.sock"));
  ASSIGN_OR_RETURN(rapidjson::Document status, Query(*qmp, "query-status"));
  if (status.IsObject() && status.HasMember("status") && status["status"].IsString()) {
    std::cout << "status: " << status["status"].GetString() << "\n";
  }
  ASSIGN_OR_RETURN(rapidjson::Document cpus, Query(*qmp, "query-cpus-fast"));
  if (cpus.IsArray()) std::cout << "vcpus: " << cpus.Size() << "\n";
  ASSIGN_OR_RETURN(rapidjson::Document mem, Query(*qmp, "query-memory-size-summary"));
  if (mem.IsObject() && mem.HasMember("base-memory") && mem["base-memory"].IsUint64()) {
    uint64_t plugged = mem.HasMember("plugged-memory") && mem["plugged-memory"].IsUint64()
                           ? mem["plugged-memory"].GetUint64()
                           : 0;
    std::cout << "memory: " << (mem["base-memory"].GetUint64() >> 20) << " MiB base, "
              << (plugged >> 20) << " MiB plugged\n";
  }
  // QEMU holds the images as descriptors (/dev/fdset/N) whose opaque string is the path.
  std::map<std::string, std::string> images;
  ASSIGN_OR_RETURN(rapidjson::Document fdsets, Query(*qmp, "query-fdsets"));
  if (fdsets.IsArray()) {
    for (const auto& set : fdsets.GetArray()) {
      if (!set.IsObject() || !set.HasMember("fdset-id") || !set["fdset-id"].IsInt64() ||
          !set.HasMember("fds") || !set["fds"].IsArray()) {
        continue;
      }
      for (const auto& fd : set["fds"].GetArray()) {
        if (fd.IsObject() && fd.HasMember("opaque") && fd["opaque"].IsString()) {
          images[absl::StrCat("/dev/fdset/", set["fdset-id"].GetInt64())] =
              fd["opaque"].GetString();
        }
      }
    }
  }
  ASSIGN_OR_RETURN(rapidjson::Document block, Query(*qmp, "query-block"));
  if (block.IsArray()) {
    for (const auto& d : block.GetArray()) {
      if (!d.IsObject() || !d.HasMember("device") || !d.HasMember("inserted")) continue;
      const auto& in = d["inserted"];
      if (!in.IsObject() || !in.HasMember("file") || !in["file"].IsString()) continue;
      bool ro = in.HasMember("ro") && in["ro"].IsBool() && in["ro"].GetBool();
      const std::string file = in["file"].GetString();
      std::cout << "disk: " << d["device"].GetString() << " "
                << (images.count(file) ? images[file] : file) << (ro ? " read-only" : " read-write")
                << "\n";
    }
  }
  return absl::OkStatus();
}

absl::Status Stop(const std::string& dir) {
  // The directory is QEMU's user's (a QEMU that dropped root): only a pid file of our own user
  // is start's, or this would signal whatever process a guest that escaped QEMU names.
  // Read without following a link, from a regular file of our own user only.
  absl::StatusOr<std::string> text =
      autoscale::ReadOwnedFile(PidFile(dir), 32, /*root_may_own=*/false);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat(PidFile(dir), ": no vmctl start runs this directory"));
  }
  if (!text.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat(text.status().message(), ": not written by vmctl start; not stopping"));
  }
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 0) {
    return absl::NotFoundError(absl::StrCat(PidFile(dir), ": no vmctl start runs this directory"));
  }
  if (kill(pid, SIGTERM) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("vmctl pid ", pid, " (", PidFile(dir), "): ", std::strerror(errno)));
  }
  // `start` removes the pid file once QEMU is gone.
  const absl::Time deadline = absl::Now() + absl::GetFlag(FLAGS_timeout) + absl::Seconds(1);
  while (std::filesystem::exists(PidFile(dir))) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("vmctl pid ", pid, " did not stop its VM in time"));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::cout << "stopped\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so every thread blocks them and `start` receives them in
  // sigtimedwait (QEMU gets the default dispositions back from Spawn).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::vector<char*> args = autoscale::InitProgram(argc, argv, kUsage);
  const std::string dir = absl::GetFlag(FLAGS_runtime_dir);
  if (args.size() != 2) {
    std::cerr << kUsage << "\n";
    return 2;
  }
  const std::string command = args[1];
  absl::Status s;
  if (command == "check") {
    absl::StatusOr<VmSpec> spec = LoadSpec();
    s = spec.status();
    if (s.ok()) std::cout << "VM " << spec->name << ": spec OK\n";
  } else if (dir.empty() && (command == "start" || command == "inspect" || command == "stop")) {
    std::cerr << "vmctl: " << command << " needs --runtime_dir\n";
    return 2;
  } else if (command == "start") {
    s = Start(dir);
  } else if (command == "inspect") {
    s = Inspect(dir);
  } else if (command == "stop") {
    s = Stop(dir);
  } else {
    std::cerr << "vmctl: unknown command \"" << command << "\"\n" << kUsage << "\n";
    return 2;
  }
  if (!s.ok()) {
    std::cerr << "vmctl: " << s << "\n";
    return 1;
  }
  return 0;
}
