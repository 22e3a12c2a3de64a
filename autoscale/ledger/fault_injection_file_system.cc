#include "autoscale/ledger/fault_injection_file_system.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::ledger {

class FaultInjectionFileSystem::File final : public WritableFile {
 public:
  File(FaultInjectionFileSystem& fs, std::shared_ptr<Inode> inode, std::string path)
      : fs_(fs), inode_(std::move(inode)), path_(std::move(path)) {}

  absl::Status Append(std::string_view data) override { return fs_.Append(*inode_, data, path_); }
  absl::Status Sync() override {
    absl::MutexLock l(&fs_.mu_);
    if (absl::Status s = fs_.Begin(Op::kSync, path_); !s.ok()) return s;
    inode_->synced = inode_->data;
    return absl::OkStatus();
  }
  absl::Status Truncate(uint64_t size) override {
    absl::MutexLock l(&fs_.mu_);
    if (absl::Status s = fs_.Begin(Op::kTruncate, path_); !s.ok()) return s;
    inode_->data.resize(size);
    return absl::OkStatus();
  }
  uint64_t Size() const override {
    absl::MutexLock l(&fs_.mu_);
    return inode_->data.size();
  }

 private:
  FaultInjectionFileSystem& fs_;
  const std::shared_ptr<Inode> inode_;
  const std::string path_;
};

class FaultInjectionFileSystem::HeldLock final : public FileLock {
 public:
  HeldLock(FaultInjectionFileSystem& fs, std::string path) : fs_(fs), path_(std::move(path)) {}
  ~HeldLock() override {
    absl::MutexLock l(&fs_.mu_);
    fs_.locked_.erase(path_);
  }

 private:
  FaultInjectionFileSystem& fs_;
  const std::string path_;
};

FaultInjectionFileSystem::FaultInjectionFileSystem(uint64_t seed) : rng_(seed) {}

FaultInjectionFileSystem::~FaultInjectionFileSystem() = default;

uint64_t FaultInjectionFileSystem::operations() const {
  absl::MutexLock l(&mu_);
  return operations_;
}

void FaultInjectionFileSystem::CrashAt(uint64_t n) {
  absl::MutexLock l(&mu_);
  crash_at_ = n;
}

bool FaultInjectionFileSystem::crashed() const {
  absl::MutexLock l(&mu_);
  return crashed_;
}

void FaultInjectionFileSystem::SetCapacity(uint64_t bytes) {
  absl::MutexLock l(&mu_);
  capacity_ = bytes;
}

void FaultInjectionFileSystem::SetFault(
    std::function<absl::Status(Op op, const std::string& path)> fault) {
  absl::MutexLock l(&mu_);
  fault_ = std::move(fault);
}

void FaultInjectionFileSystem::Restart(Crash kind) {
  absl::MutexLock l(&mu_);
  crashed_ = false;
  crash_at_ = 0;
  if (kind == Crash::kProcess) return;
  // What a directory holds after the power loss is what it held at its last sync, and each of
  // those files holds what it held at its own last sync (plus, torn, part of what followed).
  std::set<Inode*> seen;
  for (auto& [path, dir] : dirs_) {
    dir.now = dir.synced;
    for (auto& [name, inode] : dir.now) {
      if (!seen.insert(inode.get()).second) continue;
      std::string& data = inode->data;
      const std::string& synced = inode->synced;
      if (kind == Crash::kTornPowerLoss && data.size() > synced.size() &&
          data.compare(0, synced.size(), synced) == 0) {
        data.resize(synced.size() +
                    std::uniform_int_distribution<size_t>(0, data.size() - synced.size())(rng_));
      } else {
        data = synced;
      }
      inode->synced = data;
    }
  }
}

absl::Status FaultInjectionFileSystem::Alive() const {
  if (crashed_) return absl::UnavailableError("simulated crash: the process is dead");
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::Begin(Op op, const std::string& path) {
  if (absl::Status s = Alive(); !s.ok()) return s;
  ++operations_;
  if (crash_at_ != 0 && operations_ >= crash_at_) {
    crashed_ = true;
    return absl::UnavailableError(
        absl::StrCat("simulated crash at operation ", operations_, " (", path, ")"));
  }
  if (fault_) return fault_(op, path);
  return absl::OkStatus();
}

uint64_t FaultInjectionFileSystem::Used() const {
  std::set<const Inode*> seen;
  uint64_t used = 0;
  for (const auto& [path, dir] : dirs_) {
    for (const auto& [name, inode] : dir.now) {
      if (seen.insert(inode.get()).second) {
        used += std::max<uint64_t>(inode->data.size(), inode->allocated);
      }
    }
  }
  return used;
}

FaultInjectionFileSystem::Dir* FaultInjectionFileSystem::DirOf(const std::string& path,
                                                               std::string* name) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  *name = slash == std::string::npos ? path : path.substr(slash + 1);
  auto it = dirs_.find(dir);
  return it == dirs_.end() ? nullptr : &it->second;
}

const FaultInjectionFileSystem::Dir* FaultInjectionFileSystem::DirOf(const std::string& path,
                                                                     std::string* name) const {
  return const_cast<FaultInjectionFileSystem*>(this)->DirOf(path, name);
}

absl::Status FaultInjectionFileSystem::Append(Inode& inode, std::string_view data,
                                              const std::string& path) {
  absl::MutexLock l(&mu_);
  if (absl::Status s = Alive(); !s.ok()) return s;
  ++operations_;
  if (crash_at_ != 0 && operations_ >= crash_at_) {
    // The process dies in the middle of the write: some of it may have reached the file.
    crashed_ = true;
    inode.data.append(data.substr(0, std::uniform_int_distribution<size_t>(0, data.size())(rng_)));
    return absl::UnavailableError(
        absl::StrCat("simulated crash at operation ", operations_, " (write ", path, ")"));
  }
  if (fault_) {
    if (absl::Status s = fault_(Op::kAppend, path); !s.ok()) return s;
  }
  const uint64_t used = Used();
  const uint64_t room = capacity_ > used ? capacity_ - used : 0;
  // Growing into allocated space takes nothing more.
  const uint64_t free_in_file =
      inode.allocated > inode.data.size() ? inode.allocated - inode.data.size() : 0;
  if (data.size() > room + free_in_file) {
    inode.data.append(data.substr(0, room + free_in_file));
    return absl::ResourceExhaustedError(absl::StrCat("write ", path, ": No space left on device"));
  }
  inode.data.append(data);
  return absl::OkStatus();
}

std::optional<std::string> FaultInjectionFileSystem::Contents(const std::string& path) const {
  absl::MutexLock l(&mu_);
  std::string name;
  const Dir* dir = DirOf(path, &name);
  if (dir == nullptr) return std::nullopt;
  auto it = dir->now.find(name);
  if (it == dir->now.end()) return std::nullopt;
  return it->second->data;
}

void FaultInjectionFileSystem::SetContents(const std::string& path, const std::string& data) {
  absl::MutexLock l(&mu_);
  std::string name;
  Dir* dir = DirOf(path, &name);
  if (dir == nullptr) return;
  auto& inode = dir->now[name];
  if (inode == nullptr) inode = std::make_shared<Inode>();
  inode->data = inode->synced = data;
  dir->synced[name] = inode;
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionFileSystem::OpenForAppend(
    const std::string& path, bool truncate) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Begin(Op::kOpen, path));
  std::string name;
  Dir* dir = DirOf(path, &name);
  if (dir == nullptr) return absl::NotFoundError(absl::StrCat("open ", path, ": no directory"));
  std::shared_ptr<Inode>& inode = dir->now[name];
  if (inode == nullptr) inode = std::make_shared<Inode>();
  if (truncate) inode->data.clear();
  return std::unique_ptr<WritableFile>(new File(*this, inode, path));
}

absl::StatusOr<std::string> FaultInjectionFileSystem::ReadFile(const std::string& path) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Alive());
  std::string name;
  const Dir* dir = DirOf(path, &name);
  auto it = dir == nullptr ? decltype(dir->now.end()){} : dir->now.find(name);
  if (dir == nullptr || it == dir->now.end()) {
    return absl::NotFoundError(absl::StrCat("open ", path, ": No such file or directory"));
  }
  return it->second->data;
}

absl::StatusOr<std::vector<std::string>> FaultInjectionFileSystem::ListDir(const std::string& dir) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Alive());
  auto it = dirs_.find(dir);
  if (it == dirs_.end()) return absl::NotFoundError(absl::StrCat("list ", dir, ": no directory"));
  std::vector<std::string> out;
  for (const auto& [name, inode] : it->second.now) out.push_back(name);
  return out;
}

absl::Status FaultInjectionFileSystem::CreateDir(const std::string& dir) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Alive());
  dirs_[dir];  // directories themselves are durable at once
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Begin(Op::kRename, from));
  std::string a, b;
  Dir* src = DirOf(from, &a);
  Dir* dst = DirOf(to, &b);
  if (src == nullptr || dst == nullptr || src != dst || !src->now.contains(a)) {
    return absl::NotFoundError(absl::StrCat("rename ", from, " to ", to, ": not found"));
  }
  src->now[b] = src->now[a];
  src->now.erase(a);
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::Remove(const std::string& path) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Begin(Op::kRemove, path));
  std::string name;
  Dir* dir = DirOf(path, &name);
  if (dir == nullptr || dir->now.erase(name) == 0) {
    return absl::NotFoundError(absl::StrCat("remove ", path, ": No such file or directory"));
  }
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::SyncDir(const std::string& dir) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Begin(Op::kSyncDir, dir));
  auto it = dirs_.find(dir);
  if (it == dirs_.end()) return absl::NotFoundError(absl::StrCat("fsync ", dir, ": no directory"));
  it->second.synced = it->second.now;
  return absl::OkStatus();
}

absl::Status FaultInjectionFileSystem::Allocate(const std::string& path, uint64_t bytes) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Begin(Op::kAllocate, path));
  std::string name;
  Dir* dir = DirOf(path, &name);
  if (dir == nullptr) return absl::NotFoundError(absl::StrCat("allocate ", path, ": no directory"));
  const uint64_t used = Used();
  std::shared_ptr<Inode>& inode = dir->now[name];
  const uint64_t had =
      inode == nullptr ? 0 : std::max<uint64_t>(inode->allocated, inode->data.size());
  if (bytes > had && bytes - had > (capacity_ > used ? capacity_ - used : 0)) {
    if (inode == nullptr) dir->now.erase(name);
    return absl::ResourceExhaustedError(
        absl::StrCat("allocate ", path, ": No space left on device"));
  }
  if (inode == nullptr) inode = std::make_shared<Inode>();
  inode->allocated = std::max(inode->allocated, bytes);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FaultInjectionFileSystem::AllocatedBytes(const std::string& path) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Alive());
  std::string name;
  const Dir* dir = DirOf(path, &name);
  if (dir == nullptr || !dir->now.contains(name)) return 0;
  const Inode& inode = *dir->now.at(name);
  return std::max<uint64_t>(inode.allocated, inode.data.size());
}

absl::StatusOr<uint64_t> FaultInjectionFileSystem::FreeBytes(const std::string&) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Alive());
  const uint64_t used = Used();
  return capacity_ > used ? capacity_ - used : 0;
}

absl::StatusOr<std::unique_ptr<FileLock>> FaultInjectionFileSystem::Lock(const std::string& path) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(Alive());
  if (!locked_.insert(path).second) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is locked by another process"));
  }
  return std::unique_ptr<FileLock>(new HeldLock(*this, path));
}

}  // namespace autoscale::ledger
