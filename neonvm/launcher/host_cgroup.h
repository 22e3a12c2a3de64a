// A host cgroup of its own for one VM's QEMU process: a CPU quota equal to the VM's milli-CPU, a
// memory cap, and the kernel's own accounting of the CPU QEMU used. The ledger books fractional
// CPU; this is what makes a VM use no more than it was granted.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<HostCgroup> cg, HostCgroup::Create("/neonvm/vm-1.42.0"));
//   RETURN_IF_ERROR(cg->SetMemoryLimit(max_memory + overhead));
//   RETURN_IF_ERROR(cg->SetCpuLimit(250));   // 25 ms of CPU per 100 ms period
//   RETURN_IF_ERROR(cg->Attach(qemu_pid));   // the process and every thread it has or makes
//   ...
//   RETURN_IF_ERROR(cg->Remove());           // once QEMU has exited and been reaped
//
// The group is created through libcgroup (which finds the hierarchies and creates missing
// parents) in the cpu, cpuacct (cgroup v1, where it is a hierarchy of its own) and memory
// controllers. Values are written to the group's files directly, so an error names the file.
// On cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us, memory.limit_in_bytes, cpuacct.usage.
// On cgroup v2: cpu.max, memory.max, cpu.stat's usage_usec.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace autoscale::neonvm::launcher {

// The CPU quota's period: the kernel's default, short enough that a quota of a fraction of a
// CPU does not stall a guest for long.
inline constexpr int64_t kCpuPeriodUs = 100000;

// The quota per period for `milli` CPUs: milli * period / 1000.
inline constexpr int64_t CpuQuotaUs(int milli) { return int64_t{milli} * kCpuPeriodUs / 1000; }

class HostCgroup {
 public:
  // Creates the group `path` (relative to each controller's mount point, e.g.
  // "/neonvm/vm-1.42.0"). Fails, naming what is missing, when the controllers are not mounted
  // or the group cannot be created (not root).
  static absl::StatusOr<std::unique_ptr<HostCgroup>> Create(const std::string& path);
  // The existing group `path`, made by another process (the one that started QEMU): its quota
  // and accounting, without owning it (destroying the handle leaves the group). NotFound when
  // it does not exist.
  static absl::StatusOr<std::unique_ptr<HostCgroup>> Open(const std::string& path);
  // Removes the group if it made it and Remove has not (logging what fails).
  ~HostCgroup();
  HostCgroup(const HostCgroup&) = delete;
  HostCgroup& operator=(const HostCgroup&) = delete;

  const std::string& path() const { return path_; }
  bool v2() const { return v2_; }
  // The group's directories: where the CPU quota, the CPU accounting and the memory cap live
  // (the same directory on cgroup v2).
  const std::string& cpu_dir() const { return cpu_dir_; }
  const std::string& cpuacct_dir() const { return cpuacct_dir_; }
  const std::string& memory_dir() const { return memory_dir_; }

  // Moves process `pid` with all its threads into the group (cgroup.procs); threads it makes
  // later start in the group.
  absl::Status Attach(pid_t pid);
  // The CPU quota: `milli` thousandths of a CPU per period (milli > 0).
  absl::Status SetCpuLimit(int milli);
  // No CPU quota.
  absl::Status ClearCpuLimit();
  // The quota per period in microseconds as the kernel has it; -1: none.
  absl::StatusOr<int64_t> CpuQuota() const;
  // The memory cap (bytes > 0).
  absl::Status SetMemoryLimit(int64_t bytes);
  // The CPU time the group's tasks used since it was created, in nanoseconds.
  absl::StatusOr<int64_t> CpuUsageNs() const;

  // Removes the group's directories. Its processes must have exited. Idempotent.
  absl::Status Remove();

  // Removes the empty groups under `parent` made more than `min_age` ago: those a process killed
  // before it could remove them left behind. A VM's group is empty only between its creation and
  // QEMU's start (milliseconds) and after QEMU has ended, so a minute spares every live VM; its
  // owner's Remove later finds it gone, which is fine. Returns how many it removed.
  static int RemoveOrphans(const std::string& parent, absl::Duration min_age = absl::Minutes(1));

 private:
  HostCgroup(std::string path, bool v2, std::string cpu_dir, std::string cpuacct_dir,
             std::string memory_dir, bool owned)
      : path_(std::move(path)),
        v2_(v2),
        cpu_dir_(std::move(cpu_dir)),
        cpuacct_dir_(std::move(cpuacct_dir)),
        memory_dir_(std::move(memory_dir)),
        owned_(owned) {}
  std::vector<std::string> Dirs() const;

  const std::string path_;
  const bool v2_;
  const std::string cpu_dir_;
  const std::string cpuacct_dir_;
  const std::string memory_dir_;
  // Made by Create (removed when destroyed), not Open.
  const bool owned_;
  bool removed_ = false;
};

}  // namespace autoscale::neonvm::launcher
