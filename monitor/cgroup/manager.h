// Creating memory cgroups, moving processes into them and setting their limits, through
// libcgroup (which this header does not expose). Paths are relative to the controller's mount
// point, as in /proc/self/cgroup ("/process_api/42/vm-1").
//
//   ASSIGN_OR_RETURN(CgroupManager cgroups, CgroupManager::Init());
//   RETURN_IF_ERROR(cgroups.Create("/process_api/42/vm-1"));
//   RETURN_IF_ERROR(cgroups.Attach("/process_api/42/vm-1", child_pid));
//   RETURN_IF_ERROR(cgroups.SetMemoryLimit("/process_api/42/vm-1", 512 << 20));
//   ...
//   RETURN_IF_ERROR(cgroups.Delete("/process_api/42/vm-1"));  // after its processes exited
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace autoscale::monitor::cgroup {

class CgroupManager {
 public:
  // Initializes libcgroup (reads the mounted hierarchies). Cheap to call again.
  static absl::StatusOr<CgroupManager> Init();

  // Creates a memory cgroup (and missing parents).
  absl::Status Create(const std::string& path) const;
  // Moves `pid` into the group. Memory it already holds stays charged where it was.
  absl::Status Attach(const std::string& path, pid_t pid) const;
  // Sets memory.limit_in_bytes (v1) or memory.max (v2).
  absl::Status SetMemoryLimit(const std::string& path, int64_t bytes) const;
  // Removes an empty group.
  absl::Status Delete(const std::string& path) const;

 private:
  CgroupManager() = default;
};

}  // namespace autoscale::monitor::cgroup
