#include "neonvm/guest/image.h"

#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "autoscale/base/status_macros.h"

namespace autoscale::neonvm::guest {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Appends one entry of a "newc" cpio archive (what the kernel's initramfs unpacker reads).
void AppendCpioEntry(std::string* out, std::string_view name, uint32_t mode, std::string_view data,
                     uint32_t ino) {
  auto pad = [out] { out->append((4 - out->size() % 4) % 4, '\0'); };
  absl::StrAppendFormat(out, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino,
                        mode, 0, 0, 1, 0, data.size(), 0, 0, 0, 0, name.size() + 1, 0);
  out->append(name.data(), name.size());
  out->push_back('\0');
  pad();
  out->append(data.data(), data.size());
  pad();
}

// The shared libraries (and the dynamic loader) `binary` needs, as absolute paths; empty for a
// static binary or a file that is not an executable.
absl::StatusOr<std::vector<std::string>> SharedLibraries(const std::string& binary) {
  if (binary.find('\'') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("file name with a quote: ", binary));
  }
  std::string command = absl::StrCat("ldd '", binary, "' 2>/dev/null");
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return absl::InternalError(absl::StrCat("popen ldd: ", std::strerror(errno)));
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
  int rc = pclose(p);
  std::vector<std::string> libs;
  if (rc != 0) return libs;  // "not a dynamic executable"
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2
    // (0x...)"
    line = absl::StripAsciiWhitespace(line);
    size_t arrow = line.find("=> ");
    absl::string_view path = arrow == absl::string_view::npos ? line : line.substr(arrow + 3);
    path = path.substr(0, path.find(" ("));
    if (absl::StartsWith(path, "/")) libs.emplace_back(path);
    if (absl::StrContains(line, "not found")) {
      return absl::NotFoundError(absl::StrCat("ldd ", binary, ": ", line));
    }
  }
  return libs;
}

}  // namespace

std::string GuestDir() {
  if (const char* dir = std::getenv("AUTOSCALE_GUEST_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  // The passwd entry rather than $HOME, which test runners point elsewhere.
  const passwd* pw = getpwuid(getuid());
  std::string home = pw != nullptr ? pw->pw_dir : (std::getenv("HOME") ? std::getenv("HOME") : "");
  return home + "/.cache/autoscale-guest";
}

absl::StatusOr<PostgresGuestImage> FindPostgresGuestImage() {
  std::string dir = GuestDir();
  PostgresGuestImage pg{{dir + "/vmlinuz", dir + "/postgres/initrd", ""}, dir + "/postgres/pg.img"};
  for (const std::string& f : {pg.image.kernel, pg.image.initrd, pg.disk, dir + "/cmdline"}) {
    if (access(f.c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("PostgreSQL guest not built: ", f,
                                              " is missing (run neonvm/guest/build --postgres, or "
                                              "set AUTOSCALE_GUEST_DIR to where it is)"));
    }
  }
  ASSIGN_OR_RETURN(GuestImage base, FindGuestImage());
  pg.image.cmdline = base.cmdline;
  return pg;
}

absl::StatusOr<GuestImage> FindGuestImage() {
  std::string dir = GuestDir();
  GuestImage image{dir + "/vmlinuz", dir + "/initrd.gz", ""};
  for (const std::string& f : {image.kernel, image.initrd, dir + "/cmdline"}) {
    if (access(f.c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("test guest not built: ", f,
                                              " is missing (run neonvm/guest/build, or set "
                                              "AUTOSCALE_GUEST_DIR to where it is)"));
    }
  }
  ASSIGN_OR_RETURN(image.cmdline, ReadFile(dir + "/cmdline"));
  image.cmdline = std::string(absl::StripAsciiWhitespace(image.cmdline));
  return image;
}

absl::StatusOr<GuestImage> AddFiles(const GuestImage& base, const std::vector<GuestFile>& files,
                                    std::string_view boot_script, const std::string& initrd_path) {
  // guest path -> (mode, contents)
  std::map<std::string, std::pair<uint32_t, std::string>> entries;
  auto add = [&entries](const std::string& host, const std::string& guest) -> absl::Status {
    if (!absl::StartsWith(guest, "/") || absl::StrContains(guest, "/../")) {
      return absl::InvalidArgumentError(absl::StrCat("guest path ", guest, " is not absolute"));
    }
    struct stat st;
    if (stat(host.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat("adding ", host, " to the guest: not a file"));
    }
    ASSIGN_OR_RETURN(std::string data, ReadFile(host));
    entries[guest] = {S_IFREG | (st.st_mode & 0755), std::move(data)};
    return absl::OkStatus();
  };
  for (const GuestFile& f : files) {
    RETURN_IF_ERROR(add(f.host_path, f.guest_path));
    ASSIGN_OR_RETURN(std::vector<std::string> libs, SharedLibraries(f.host_path));
    for (const std::string& lib : libs) {
      if (!entries.count(lib)) RETURN_IF_ERROR(add(lib, lib));
    }
  }
  if (!boot_script.empty()) {
    std::string script(boot_script);
    if (script.rfind("#!", 0) != 0) script.insert(0, "#!/bin/sh\n");
    entries["/etc/boot.sh"] = {S_IFREG | 0755, std::move(script)};
  }

  // Every parent directory gets an entry of its own; the kernel does not create them.
  std::set<std::string> dirs;
  for (const auto& [path, entry] : entries) {
    for (size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      dirs.insert(path.substr(1, slash - 1));
    }
  }
  std::string archive;
  uint32_t ino = 1 << 20;  // Clear of the base archive's inode numbers.
  for (const std::string& d : dirs) AppendCpioEntry(&archive, d, S_IFDIR | 0755, "", ino++);
  for (const auto& [path, entry] : entries) {
    AppendCpioEntry(&archive, path.substr(1), entry.first, entry.second, ino++);
  }
  AppendCpioEntry(&archive, "TRAILER!!!", 0, "", ino++);

  ASSIGN_OR_RETURN(std::string initrd, ReadFile(base.initrd));
  // The kernel looks for the next archive's magic only at a 4-byte boundary.
  initrd.append((4 - initrd.size() % 4) % 4, '\0');
  std::ofstream out(initrd_path, std::ios::binary | std::ios::trunc);
  out << initrd << archive;
  out.close();
  if (!out) {
    return absl::InternalError(absl::StrCat("writing ", initrd_path, ": ", std::strerror(errno)));
  }
  GuestImage image = base;
  image.initrd = initrd_path;
  return image;
}

}  // namespace autoscale::neonvm::guest
