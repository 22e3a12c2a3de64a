#include "neonvm/launcher/host_cgroup.h"

#include <libcgroup.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autoscale/base/status_macros.h"
#include "glog/logging.h"

namespace autoscale::neonvm::launcher {
namespace {

absl::Status CgroupError(int ret, const std::string& what) {
  return absl::FailedPreconditionError(
      absl::StrCat("libcgroup: ", what, ": ", cgroup_strerror(ret), " (", ret, ")"));
}

// The mount point of `controller`, through libcgroup.
absl::StatusOr<std::string> MountPoint(const char* controller) {
  char* mount = nullptr;
  int ret = cgroup_get_subsys_mount_point(controller, &mount);
  if (ret != 0 || mount == nullptr) {
    return CgroupError(ret, absl::StrCat("the ", controller, " controller is not mounted"));
  }
  std::string result = mount;
  free(mount);
  return result;
}

absl::Status WriteFile(const std::string& file, const std::string& value) {
  std::ofstream out(file);
  if (out) out << value;
  if (out) out.flush();
  if (!out) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write \"", value, "\" to ", file, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& file) {
  std::ifstream in(file);
  std::stringstream text;
  if (in) text << in.rdbuf();
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", file, ": ", std::strerror(errno)));
  }
  return text.str();
}

absl::StatusOr<int64_t> ParseInt(absl::string_view text, const std::string& file) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &v)) {
    return absl::InternalError(absl::StrCat(file, ": not a number: \"", text, "\""));
  }
  return v;
}

struct CgroupDeleter {
  void operator()(struct cgroup* cg) const { cgroup_free(&cg); }
};

// Where the controllers' hierarchies are mounted.
struct Mounts {
  bool v2 = false;
  std::string cpu;
  std::string cpuacct;
  std::string memory;
};

absl::StatusOr<Mounts> FindMounts() {
  int ret = cgroup_init();
  if (ret != 0) return CgroupError(ret, "init");
  Mounts m;
  ASSIGN_OR_RETURN(m.cpu, MountPoint("cpu"));
  ASSIGN_OR_RETURN(m.memory, MountPoint("memory"));
  m.v2 = access((m.cpu + "/cgroup.controllers").c_str(), F_OK) == 0;
  m.cpuacct = m.cpu;
  if (!m.v2) {
    ASSIGN_OR_RETURN(m.cpuacct, MountPoint("cpuacct"));
  }
  return m;
}

absl::Status CheckPath(const std::string& path) {
  if (path.empty() || path[0] != '/' || path == "/" || absl::StrContains(path, "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat("host cgroup path \"", path, "\" must start with '/' and name a group"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HostCgroup>> HostCgroup::Create(const std::string& path) {
  RETURN_IF_ERROR(CheckPath(path));
  ASSIGN_OR_RETURN(Mounts mounts, FindMounts());
  const bool v2 = mounts.v2;
  const std::string& cpu_mount = mounts.cpu;

  std::unique_ptr<struct cgroup, CgroupDeleter> cg(cgroup_new_cgroup(path.c_str()));
  if (!cg) return absl::InternalError(absl::StrCat("libcgroup: no handle for ", path));
  std::vector<const char*> controllers = {"cpu", "memory"};
  if (!v2) controllers.push_back("cpuacct");
  for (const char* c : controllers) {
    if (cgroup_add_controller(cg.get(), c) == nullptr) {
      return absl::InternalError(absl::StrCat("libcgroup: cannot add ", c, " to ", path));
    }
  }
  if (v2) {
    // A v2 group has the cpu and memory files only where its parent delegates them: enable
    // them down from the root to the new group's parent.
    std::string dir = cpu_mount;
    std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      RETURN_IF_ERROR(WriteFile(dir + "/cgroup.subtree_control", "+cpu +memory"));
      dir += "/" + parts[i];
      if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot create ", dir, ": ", std::strerror(errno)));
      }
    }
    RETURN_IF_ERROR(WriteFile(dir + "/cgroup.subtree_control", "+cpu +memory"));
  }
  // Creates the group (and missing parents) in every controller's hierarchy.
  int ret = cgroup_create_cgroup(cg.get(), /*ignore_ownership=*/0);
  if (ret != 0) {
    return CgroupError(ret, absl::StrCat("creating ", path, " (cgroups need root)"));
  }
  return std::unique_ptr<HostCgroup>(new HostCgroup(
      path, v2, cpu_mount + path, mounts.cpuacct + path, mounts.memory + path, /*owned=*/true));
}

absl::StatusOr<std::unique_ptr<HostCgroup>> HostCgroup::Open(const std::string& path) {
  RETURN_IF_ERROR(CheckPath(path));
  ASSIGN_OR_RETURN(Mounts mounts, FindMounts());
  std::unique_ptr<HostCgroup> cg(new HostCgroup(path, mounts.v2, mounts.cpu + path,
                                                mounts.cpuacct + path, mounts.memory + path,
                                                /*owned=*/false));
  for (const std::string& dir : cg->Dirs()) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat("host cgroup ", path, ": no directory ", dir));
    }
  }
  return cg;
}

HostCgroup::~HostCgroup() {
  if (!owned_) return;
  absl::Status s = Remove();
  if (!s.ok()) LOG(WARNING) << s;
}

std::vector<std::string> HostCgroup::Dirs() const {
  // Deduplicated: on v2, and where cpu and cpuacct share a mount, they are the same directory.
  std::set<std::string> dirs = {cpu_dir_, cpuacct_dir_, memory_dir_};
  return {dirs.begin(), dirs.end()};
}

absl::Status HostCgroup::Attach(pid_t pid) {
  // cgroup.procs moves the whole thread group at once (libcgroup writes `tasks` on v1, which
  // moves only one thread).
  for (const std::string& dir : Dirs()) {
    RETURN_IF_ERROR(WriteFile(dir + "/cgroup.procs", absl::StrCat(pid)));
  }
  return absl::OkStatus();
}

absl::Status HostCgroup::SetCpuLimit(int milli) {
  if (milli <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("host cgroup ", path_, ": CPU limit ", milli, "m must be positive"));
  }
  if (v2_) {
    return WriteFile(cpu_dir_ + "/cpu.max", absl::StrCat(CpuQuotaUs(milli), " ", kCpuPeriodUs));
  }
  RETURN_IF_ERROR(WriteFile(cpu_dir_ + "/cpu.cfs_period_us", absl::StrCat(kCpuPeriodUs)));
  return WriteFile(cpu_dir_ + "/cpu.cfs_quota_us", absl::StrCat(CpuQuotaUs(milli)));
}

absl::Status HostCgroup::ClearCpuLimit() {
  if (v2_) return WriteFile(cpu_dir_ + "/cpu.max", absl::StrCat("max ", kCpuPeriodUs));
  return WriteFile(cpu_dir_ + "/cpu.cfs_quota_us", "-1");
}

absl::StatusOr<int64_t> HostCgroup::CpuQuota() const {
  if (v2_) {
    std::string file = cpu_dir_ + "/cpu.max";
    ASSIGN_OR_RETURN(std::string text, ReadFile(file));
    std::vector<std::string> f = absl::StrSplit(absl::StripAsciiWhitespace(text), ' ');
    if (f[0] == "max") return -1;
    return ParseInt(f[0], file);
  }
  std::string file = cpu_dir_ + "/cpu.cfs_quota_us";
  ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  return ParseInt(text, file);
}

absl::Status HostCgroup::SetMemoryLimit(int64_t bytes) {
  if (bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("host cgroup ", path_, ": memory limit ", bytes, " must be positive"));
  }
  return WriteFile(memory_dir_ + (v2_ ? "/memory.max" : "/memory.limit_in_bytes"),
                   absl::StrCat(bytes));
}

absl::StatusOr<int64_t> HostCgroup::CpuUsageNs() const {
  if (!v2_) {
    std::string file = cpuacct_dir_ + "/cpuacct.usage";
    ASSIGN_OR_RETURN(std::string text, ReadFile(file));
    return ParseInt(text, file);
  }
  std::string file = cpu_dir_ + "/cpu.stat";
  ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, "usage_usec ")) {
      ASSIGN_OR_RETURN(int64_t us, ParseInt(line, file));
      return us * 1000;
    }
  }
  return absl::InternalError(absl::StrCat(file, " has no usage_usec line"));
}

int HostCgroup::RemoveOrphans(const std::string& parent, absl::Duration min_age) {
  if (cgroup_init() != 0) return 0;
  std::set<std::string> mounts;
  for (const char* c : {"cpu", "cpuacct", "memory"}) {
    absl::StatusOr<std::string> mount = MountPoint(c);
    if (mount.ok()) mounts.insert(*mount);
  }
  absl::Time made_before = absl::Now() - min_age;
  int removed = 0;
  for (const std::string& mount : mounts) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(mount + parent, ec)) {
      struct stat st;
      if (stat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
          absl::FromTimeT(st.st_mtime) > made_before) {
        continue;
      }
      // Fails (EBUSY) while processes are in it: only empty groups go.
      if (rmdir(entry.path().c_str()) == 0) {
        LOG(INFO) << "removed host cgroup " << entry.path() << ", left behind";
        ++removed;
      }
    }
  }
  return removed;
}

absl::Status HostCgroup::Remove() {
  if (removed_) return absl::OkStatus();
  // rmdir on each hierarchy: a group in separately mounted v1 controllers is one directory in
  // each, and libcgroup's delete leaves some of them behind.
  for (const std::string& dir : Dirs()) {
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrCat("host cgroup ", path_, ": cannot remove ", dir, ": ", std::strerror(errno)));
    }
  }
  removed_ = true;
  return absl::OkStatus();
}

}  // namespace autoscale::neonvm::launcher
