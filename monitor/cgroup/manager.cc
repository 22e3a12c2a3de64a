#include "monitor/cgroup/manager.h"

#include <libcgroup.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace autoscale::monitor::cgroup {
namespace {

absl::Status CgroupError(int ret, const std::string& what) {
  return absl::InternalError(
      absl::StrCat("libcgroup ", what, ": ", cgroup_strerror(ret), " (", ret, ")"));
}

struct CgroupDeleter {
  void operator()(struct cgroup* cg) const { cgroup_free(&cg); }
};
using CgroupPtr = std::unique_ptr<struct cgroup, CgroupDeleter>;

// A libcgroup handle for `path` with the memory controller, optionally with one value set.
absl::StatusOr<CgroupPtr> Handle(const std::string& path) {
  CgroupPtr cg(cgroup_new_cgroup(path.c_str()));
  if (!cg)
    return absl::InternalError(absl::StrCat("libcgroup: cannot allocate a handle for ", path));
  if (cgroup_add_controller(cg.get(), "memory") == nullptr) {
    return absl::InternalError(
        absl::StrCat("libcgroup: cannot add the memory controller to ", path));
  }
  return cg;
}

}  // namespace

absl::StatusOr<CgroupManager> CgroupManager::Init() {
  int ret = cgroup_init();
  if (ret != 0) return CgroupError(ret, "init");
  return CgroupManager();
}

absl::Status CgroupManager::Create(const std::string& path) const {
  auto cg = Handle(path);
  if (!cg.ok()) return cg.status();
  int ret = cgroup_create_cgroup(cg->get(), /*ignore_ownership=*/0);
  if (ret != 0) return CgroupError(ret, "create memory:" + path);
  return absl::OkStatus();
}

absl::Status CgroupManager::Attach(const std::string& path, pid_t pid) const {
  auto cg = Handle(path);
  if (!cg.ok()) return cg.status();
  int ret = cgroup_attach_task_pid(cg->get(), pid);
  if (ret != 0) return CgroupError(ret, absl::StrCat("attach pid ", pid, " to memory:", path));
  return absl::OkStatus();
}

absl::Status CgroupManager::SetMemoryLimit(const std::string& path, int64_t bytes) const {
  CgroupPtr cg(cgroup_new_cgroup(path.c_str()));
  if (!cg) return absl::InternalError("libcgroup: cannot allocate a handle for " + path);
  int ret = cgroup_get_cgroup(cg.get());
  if (ret != 0) return CgroupError(ret, "read memory:" + path);
  struct cgroup_controller* memory = cgroup_get_controller(cg.get(), "memory");
  if (memory == nullptr) return absl::NotFoundError("no memory controller on " + path);
  // v1 names the limit memory.limit_in_bytes, v2 memory.max.
  const char* name = "memory.limit_in_bytes";
  char* current = nullptr;
  if (cgroup_get_value_string(memory, name, &current) != 0) name = "memory.max";
  free(current);
  ret = cgroup_set_value_int64(memory, name, bytes);
  if (ret != 0) return CgroupError(ret, absl::StrCat("set ", name, " of ", path));
  ret = cgroup_modify_cgroup(cg.get());
  if (ret != 0) return CgroupError(ret, absl::StrCat("write ", name, "=", bytes, " to ", path));
  return absl::OkStatus();
}

absl::Status CgroupManager::Delete(const std::string& path) const {
  auto cg = Handle(path);
  if (!cg.ok()) return cg.status();
  int ret = cgroup_delete_cgroup(cg->get(), /*ignore_migration=*/0);
  if (ret != 0) return CgroupError(ret, "delete memory:" + path);
  return absl::OkStatus();
}

}  // namespace autoscale::monitor::cgroup
