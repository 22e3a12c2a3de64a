#include "autoscale/ledger/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace autoscale::ledger {
namespace {

absl::Status Errno(std::string_view what, const std::string& path, int err = errno) {
  const std::string message = absl::StrCat(absl::string_view(what.data(), what.size()), " ", path,
                                           ": ", std::strerror(err));
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    default:
      return absl::UnavailableError(message);
  }
}

class PosixFile final : public WritableFile {
 public:
  PosixFile(int fd, std::string path, uint64_t size)
      : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixFile() override { ::close(fd_); }

  absl::Status Append(std::string_view data) override {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, size_ + done);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        size_ += done;
        return Errno("write", path_, err);
      }
      done += n;
    }
    size_ += done;
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    return ::fdatasync(fd_) == 0 ? absl::OkStatus() : Errno("fdatasync", path_);
  }
  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return Errno("truncate", path_);
    size_ = size;
    return absl::OkStatus();
  }
  uint64_t Size() const override { return size_; }

 private:
  const int fd_;
  const std::string path_;
  // Where the next write goes: the file's end as this handle wrote it.
  uint64_t size_;
};

class PosixLock final : public FileLock {
 public:
  explicit PosixLock(int fd) : fd_(fd) {}
  ~PosixLock() override { ::close(fd_); }

 private:
  const int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path,
                                                              bool truncate) override {
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    if (fd < 0) return Errno("open", path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return Errno("stat", path, err);
    }
    return std::make_unique<PosixFile>(fd, path, static_cast<uint64_t>(st.st_size));
  }

  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Errno("open", path);
    std::string data;
    char buf[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        return Errno("read", path, err);
      }
      if (n == 0) break;
      data.append(buf, n);
    }
    ::close(fd);
    return data;
  }

  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Errno("list", dir);
    std::vector<std::string> out;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") out.push_back(name);
    }
    ::closedir(d);
    return out;
  }

  absl::Status CreateDir(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Errno("create directory", dir, ec.value());
    return absl::OkStatus();
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return Errno("rename to " + to, from);
    return absl::OkStatus();
  }

  absl::Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return Errno("remove", path);
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno("open directory", dir);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    return rc == 0 ? absl::OkStatus() : Errno("fsync directory", dir, err);
  }

  absl::Status Allocate(const std::string& path, uint64_t bytes) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Errno("create", path);
    int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    ::close(fd);
    if (err != 0) {
      // A part may be allocated: give it back, since the point is to free it when needed.
      ::unlink(path.c_str());
      return Errno("allocate", path, err);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> AllocatedBytes(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return 0;
      return Errno("stat", path);
    }
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

  absl::StatusOr<uint64_t> FreeBytes(const std::string& dir) override {
    struct statvfs st;
    if (::statvfs(dir.c_str(), &st) != 0) return Errno("statvfs", dir);
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  }

  absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Errno("open", path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return absl::FailedPreconditionError(absl::StrCat(path, " is locked by another process"));
      }
      return Errno("flock", path, err);
    }
    return std::make_unique<PosixLock>(fd);
  }
};

}  // namespace

FileSystem& FileSystem::Default() {
  static FileSystem* fs = new PosixFileSystem();
  return *fs;
}

}  // namespace autoscale::ledger
