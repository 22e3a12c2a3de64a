#include "autoscale/testing/fake_vm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"

namespace autoscale::testing {

using core::Resources;
using neonvm::migration::Devices;
using neonvm::migration::MigrationOptions;
using neonvm::migration::Progress;

std::string FakeMonitorAddress(const std::string& vm) { return "fake-monitor:" + vm; }

api::v1::VmConfig FakeVmConfig(const std::string& vm, core::Bounds bounds) {
  api::v1::VmConfig c;
  c.set_name(vm);
  c.set_qmp("fake:" + vm);
  c.set_monitor_address(FakeMonitorAddress(vm));
  c.set_monitor_guest_port(10301);
  c.mutable_bounds()->set_min_cu(bounds.min_cu);
  c.mutable_bounds()->set_max_cu(bounds.max_cu);
  c.set_migratable(true);
  api::v1::VmLaunchSpec& spec = *c.mutable_spec();
  spec.set_name(vm);
  spec.set_cpus_min(1);
  spec.set_cpus_max(8);
  spec.set_cpus_use(1);
  spec.set_memory_slot_bytes(kGiB);
  spec.set_memory_slots_min(1);
  spec.set_memory_slots_max(8);
  spec.set_memory_slots_use(1);
  return c;
}

std::string FakeHostCgroup(const std::string& qmp_address) { return "/fake-cgroup/" + qmp_address; }

namespace {

bool Runs(const std::string& state) { return state == "running" || state == "paused"; }

}  // namespace

Resources FakeVm::size() const {
  absl::MutexLock lock(&hv_.mu_);
  return size_;
}

std::string FakeVm::run_state() const {
  absl::MutexLock lock(&hv_.mu_);
  return run_state_;
}

int FakeVm::resizes() const {
  absl::MutexLock lock(&hv_.mu_);
  return resizes_;
}

int FakeVm::postcopy_switches() const {
  absl::MutexLock lock(&hv_.mu_);
  return postcopy_switches_;
}

int FakeVm::cancels() const {
  absl::MutexLock lock(&hv_.mu_);
  return cancels_;
}

std::string FakeVm::migration_status() const {
  absl::MutexLock lock(&hv_.mu_);
  return migration_status_;
}

void FakeVm::SetReachable(bool reachable) {
  absl::MutexLock lock(&hv_.mu_);
  if (reachable_ && !reachable) ++epoch_;
  reachable_ = reachable;
}

void FakeVm::FailResizes(absl::Status error) {
  absl::MutexLock lock(&hv_.mu_);
  resize_error_ = std::move(error);
}

void FakeVm::Kill() {
  absl::MutexLock lock(&hv_.mu_);
  run_state_ = "shutdown";
  ++epoch_;
  hv_.Track();
}

// A connection to a FakeVm: it fails like a lost QMP connection once the VM was unreachable or
// gone since it was opened. Every call holds the hypervisor's lock.
class FakeConnection {
 public:
  // Called with the hypervisor's lock held.
  explicit FakeConnection(FakeVm& vm) : vm_(vm), epoch_(vm.epoch_) {}

 protected:
  absl::Status Check() const {
    if (!vm_.reachable_ || vm_.epoch_ != epoch_ || vm_.run_state_ == "shutdown") {
      return absl::UnavailableError(
          absl::StrCat("QMP connection to ", vm_.qmp_address_, " lost: fake VM unreachable"));
    }
    return absl::OkStatus();
  }
  absl::Mutex* mu() const { return &vm_.hv_.mu_; }

  FakeVm& vm_;
  const int epoch_;
};

class FakeDriver final : public agent::VmDriver, private FakeConnection {
 public:
  using FakeConnection::FakeConnection;

  absl::StatusOr<Resources> Current() override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    return vm_.size_;
  }
  absl::StatusOr<Resources> Resize(const Resources& target, absl::Duration) override {
    absl::MutexLock lock(mu());
    ++vm_.resizes_;
    if (absl::Status s = Check(); !s.ok()) return s;
    if (!vm_.resize_error_.ok()) return vm_.resize_error_;
    vm_.size_ = target;
    return vm_.size_;
  }
};

class FakeSource final : public neonvm::migration::Source, private FakeConnection {
 public:
  using FakeConnection::FakeConnection;

  std::string name() const override { return "fake VM " + vm_.name_; }

  absl::StatusOr<std::string> RunState(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    return vm_.run_state_;
  }
  absl::StatusOr<bool> KvmEnabled(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    return vm_.hv_.script_.kvm;
  }
  absl::StatusOr<Devices> CaptureDevices(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    return Devices{};
  }
  absl::Status Configure(const MigrationOptions& options, absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    vm_.postcopy_allowed_ = options.allow_postcopy;
    return absl::OkStatus();
  }
  absl::Status Start(const std::string& uri, absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    FakeVm* target = nullptr;
    for (const auto& vm : vm_.hv_.vms_) {
      if (vm->uri_ == uri && vm->run_state_ == "inmigrate") target = vm.get();
    }
    const std::string& now = vm_.migration_status_;
    if (now == "setup" || now == "active" || now == "postcopy-active" || now == "postcopy-paused") {
      return absl::FailedPreconditionError("GenericError: There's a migration process in progress");
    }
    if (target == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("GenericError: nothing listens at ", uri));
    }
    vm_.target_ = target;
    vm_.migration_status_ = "setup";
    vm_.polls_ = 0;
    vm_.postcopy_polls_ = 0;
    vm_.query_timeouts_ = 0;
    vm_.ran_ = vm_.run_state_ == "running";
    return absl::OkStatus();
  }
  absl::StatusOr<Progress> Query(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    Advance();
    vm_.hv_.Track();
    if (vm_.query_timeouts_ > 0) {
      --vm_.query_timeouts_;
      return absl::DeadlineExceededError("qmp query-migrate on " + vm_.qmp_address_ +
                                         ": timed out (fake)");
    }
    Progress p;
    p.status = vm_.migration_status_;
    p.passes = vm_.polls_;
    if (p.status == "failed") p.error = "fake migration failed";
    p.stats.ram_bytes = vm_.size_.memory_bytes;
    p.stats.transferred_bytes = vm_.size_.memory_bytes;
    p.stats.passes = vm_.polls_;
    return p;
  }
  absl::Status StartPostcopy(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    if (!vm_.postcopy_allowed_ || vm_.migration_status_ != "active") {
      return absl::FailedPreconditionError("GenericError: postcopy not possible now");
    }
    ++vm_.postcopy_switches_;
    // The switch: the source pauses for good, the target runs the VM (pages follow on demand).
    vm_.migration_status_ = "postcopy-active";
    vm_.run_state_ = "finish-migrate";
    vm_.target_->size_ = vm_.size_;
    vm_.target_->run_state_ = vm_.ran_ ? "running" : "paused";
    vm_.query_timeouts_ = vm_.hv_.script_.query_timeouts_in_postcopy;
    vm_.hv_.Track();
    return absl::OkStatus();
  }
  absl::Status Cancel(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    ++vm_.cancels_;
    const std::string& status = vm_.migration_status_;
    if (status != "setup" && status != "active") return absl::OkStatus();  // too late: ignored
    if (vm_.hv_.script_.cancel_loses_race) {
      Complete();
      vm_.hv_.Track();
      return absl::OkStatus();
    }
    vm_.migration_status_ = "cancelled";
    return absl::OkStatus();
  }
  absl::Status Resume(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    vm_.run_state_ = "running";
    vm_.hv_.Track();
    return absl::OkStatus();
  }
  absl::Status Quit(absl::Duration) override {
    absl::MutexLock lock(mu());
    if (absl::Status s = Check(); !s.ok()) return s;
    vm_.run_state_ = "shutdown";
    vm_.hv_.Track();
    return absl::OkStatus();
  }

 private:
  void Complete() {
    vm_.migration_status_ = "completed";
    FakeVm& target = *vm_.target_;
    if (vm_.postcopy_polls_ == 0) {  // precopy: the target starts now
      target.size_ = vm_.size_;
      target.run_state_ = vm_.ran_ ? "running" : "paused";
    }
    vm_.run_state_ = "postmigrate";
    // As QEMU: the target reports its incoming migration completed from then on.
    target.migration_status_ = "completed";
    if (vm_.hv_.script_.kill_target_at_completion) {
      target.run_state_ = "shutdown";
      ++target.epoch_;
    }
    vm_.query_timeouts_ = vm_.hv_.script_.query_timeouts_at_completion;
  }

  // One poll's worth of progress.
  void Advance() {
    const MigrationScript& script = vm_.hv_.script_;
    std::string& status = vm_.migration_status_;
    const bool postcopy = status == "postcopy-active" || status == "postcopy-paused";
    if (status != "setup" && status != "active" && !postcopy) return;
    ++vm_.polls_;
    FakeVm& target = *vm_.target_;
    if (script.kill_target_at_poll > 0 && vm_.polls_ == script.kill_target_at_poll) {
      target.run_state_ = "shutdown";
      ++target.epoch_;
    }
    if (target.run_state_ == "shutdown") {
      if (postcopy) {
        status = "postcopy-paused";  // waits for a recovery that cannot come
      } else {
        status = "failed";  // the source runs on (it never paused)
      }
      return;
    }
    if (script.fail_at_poll > 0 && vm_.polls_ >= script.fail_at_poll) {
      status = postcopy ? "postcopy-paused" : "failed";
      return;
    }
    if (status == "setup") {
      status = "active";
      return;
    }
    if (postcopy) {
      if (++vm_.postcopy_polls_ > script.postcopy_polls) Complete();
      return;
    }
    if (vm_.polls_ > script.active_polls) Complete();
  }
};

class FakeIncoming final : public agent::IncomingVm {
 public:
  // `token`: the agent token of the request, written where the QEMU launcher would put it (a
  // file of the test's temporary directory, here).
  FakeIncoming(FakeVm& vm, const std::string& token) : vm_(vm) {
    if (token.empty()) return;
    std::string name = vm_.qmp_address_;
    for (char& c : name) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    const char* tmp = std::getenv("TEST_TMPDIR");
    token_file_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/agent-token.", name);
    std::ofstream(token_file_, std::ios::trunc) << token;
  }
  ~FakeIncoming() override {
    (void)Stop();
    if (!token_file_.empty()) std::remove(token_file_.c_str());
  }

  const std::string& uri() const override { return vm_.uri_; }
  absl::Status AwaitArrival(bool expect_running, absl::Duration timeout) override {
    absl::MutexLock lock(&vm_.hv_.mu_);
    auto arrived = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(vm_.hv_.mu_) {
      return vm_.run_state_ != "inmigrate";
    };
    if (!vm_.hv_.mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout)) {
      return absl::DeadlineExceededError("the fake incoming VM " + vm_.name_ + " never arrived");
    }
    if (vm_.run_state_ == "running" || (!expect_running && vm_.run_state_ == "paused")) {
      return absl::OkStatus();
    }
    return absl::InternalError(
        absl::StrCat("the fake incoming VM ", vm_.name_, " is ", vm_.run_state_));
  }
  absl::Status Stop() override {
    absl::MutexLock lock(&vm_.hv_.mu_);
    vm_.run_state_ = "shutdown";
    vm_.hv_.Track();
    return absl::OkStatus();
  }
  std::string qmp_address() const override { return vm_.qmp_address_; }
  absl::StatusOr<std::string> MonitorAddress(int) const override {
    return FakeMonitorAddress(vm_.name_);
  }
  std::string serial_path() const override { return "fake-serial:" + vm_.qmp_address_; }
  std::string host_cgroup() const override { return FakeHostCgroup(vm_.qmp_address_); }
  std::string agent_token_file() const override { return token_file_; }

 private:
  FakeVm& vm_;
  std::string token_file_;
};

FakeVm& FakeHypervisor::AddLocked(const std::string& name, const std::string& qmp_address,
                                  Resources size, const std::string& run_state) {
  vms_.push_back(std::unique_ptr<FakeVm>(new FakeVm(*this, name, qmp_address, size, run_state)));
  return *vms_.back();
}

FakeVm& FakeHypervisor::AddVm(const std::string& name, const std::string& qmp_address,
                              Resources size, const std::string& run_state) {
  absl::MutexLock lock(&mu_);
  return AddLocked(name, qmp_address, size, run_state);
}

FakeVm* FakeHypervisor::Find(const std::string& qmp_address) {
  absl::MutexLock lock(&mu_);
  for (const auto& vm : vms_) {
    if (vm->qmp_address_ == qmp_address) return vm.get();
  }
  return nullptr;
}

FakeVm* FakeHypervisor::Running(const std::string& name) {
  absl::MutexLock lock(&mu_);
  for (const auto& vm : vms_) {
    if (vm->name_ == name && Runs(vm->run_state_)) return vm.get();
  }
  return nullptr;
}

int FakeHypervisor::CopiesLocked(const std::string& name) const {
  int n = 0;
  for (const auto& vm : vms_) n += vm->name_ == name && Runs(vm->run_state_);
  return n;
}

int FakeHypervisor::RunningCopies(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  return CopiesLocked(name);
}

int FakeHypervisor::MaxRunningCopies(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = max_copies_.find(name);
  return it == max_copies_.end() ? CopiesLocked(name) : it->second;
}

void FakeHypervisor::Track() {
  for (const auto& vm : vms_) {
    int& max = max_copies_[vm->name_];
    max = std::max(max, CopiesLocked(vm->name_));
  }
}

void FakeHypervisor::SetMigrationScript(const MigrationScript& script) {
  absl::MutexLock lock(&mu_);
  script_ = script;
}

absl::StatusOr<agent::OpenedVm> FakeVmDriverFactory::Open(const api::v1::VmConfig& vm,
                                                          const Resources&,
                                                          int64_t granted_milli_cpu,
                                                          absl::Duration) {
  {
    absl::MutexLock lock(&mu_);
    ++opens_;
    granted_[vm.qmp()] = granted_milli_cpu;
    host_cgroups_[vm.qmp()] = vm.host_cgroup();
  }
  absl::MutexLock lock(&hv_.mu_);
  for (const auto& fake : hv_.vms_) {
    if (fake->qmp_address_ != vm.qmp()) continue;
    if (!fake->reachable_ || fake->run_state_ == "shutdown") break;
    agent::OpenedVm opened;
    opened.driver = std::make_unique<FakeDriver>(*fake);
    opened.migration = std::make_unique<FakeSource>(*fake);
    return opened;
  }
  return absl::UnavailableError(absl::StrCat("connecting to ", vm.qmp(), ": no fake VM there"));
}

absl::StatusOr<std::unique_ptr<agent::IncomingVm>> FakeVmDriverFactory::StartIncoming(
    const api::v1::PrepareIncomingRequest& request, const std::string&) {
  std::function<void(const api::v1::PrepareIncomingRequest&)> hook;
  {
    absl::MutexLock lock(&mu_);
    hook = incoming_hook_;
  }
  if (hook) hook(request);
  {
    absl::MutexLock lock(&mu_);
    incoming_requests_.push_back(request);
    if (!incoming_error_.ok()) return incoming_error_;
  }
  absl::MutexLock lock(&hv_.mu_);
  const int n = hv_.next_incoming_++;
  const Resources size{request.current().milli_cpu(), request.current().memory_bytes()};
  FakeVm& vm = hv_.AddLocked(request.vm().name(),
                             absl::StrCat("fake:", node_, "/", request.vm().name(), "/", n), size,
                             "inmigrate");
  vm.uri_ = absl::StrCat("fake-migration:", n);
  return std::make_unique<FakeIncoming>(vm, request.agent_token());
}

void FakeVmDriverFactory::OnStartIncoming(
    std::function<void(const api::v1::PrepareIncomingRequest&)> hook) {
  absl::MutexLock lock(&mu_);
  incoming_hook_ = std::move(hook);
}

std::vector<api::v1::PrepareIncomingRequest> FakeVmDriverFactory::incoming_requests() const {
  absl::MutexLock lock(&mu_);
  return incoming_requests_;
}

int FakeVmDriverFactory::opens() const {
  absl::MutexLock lock(&mu_);
  return opens_;
}

int64_t FakeVmDriverFactory::granted_milli_cpu(const std::string& qmp_address) const {
  absl::MutexLock lock(&mu_);
  auto it = granted_.find(qmp_address);
  return it == granted_.end() ? -1 : it->second;
}

std::string FakeVmDriverFactory::host_cgroup(const std::string& qmp_address) const {
  absl::MutexLock lock(&mu_);
  auto it = host_cgroups_.find(qmp_address);
  return it == host_cgroups_.end() ? "" : it->second;
}

void FakeVmDriverFactory::FailIncoming(absl::Status error) {
  absl::MutexLock lock(&mu_);
  incoming_error_ = std::move(error);
}

}  // namespace autoscale::testing
