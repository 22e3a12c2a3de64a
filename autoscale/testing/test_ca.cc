#include "autoscale/testing/test_ca.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autoscale/base/subprocess.h"

namespace autoscale::testing {
namespace {

// Runs openssl with `args`; its output goes to dir/openssl.log, which an error quotes.
absl::Status Openssl(const std::string& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  const std::string log = dir + "/openssl.log";
  ::unlink(log.c_str());
  absl::StatusOr<pid_t> pid = Spawn(args, [&] {
    SpawnOptions o;
    o.output_file = log;
    return o;
  }());
  if (!pid.ok()) return pid.status();
  Subprocess child(*pid);
  absl::StatusOr<int> status = child.Wait(absl::Seconds(30));
  if (!status.ok()) return status.status();
  if (*status != 0) {
    std::ifstream in(log);
    std::stringstream out;
    out << in.rdbuf();
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(args, " "), ": ", DescribeWaitStatus(*status), ": ", out.str()));
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

constexpr char kCurve[] = "ec_paramgen_curve:prime256v1";

}  // namespace

std::string OpensslMissing() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    if (::access(absl::StrCat(dir, "/openssl").c_str(), X_OK) == 0) return "";
  }
  return "openssl (Debian's openssl package) is not installed";
}

absl::StatusOr<TestCa> TestCa::Create(std::string dir, const std::string& name) {
  ::mkdir(dir.c_str(), 0700);
  TestCa ca(std::move(dir));
  const std::string& d = ca.dir_;
  if (absl::Status s =
          Openssl(d, {"req", "-x509", "-newkey", "ec", "-pkeyopt", kCurve, "-nodes", "-keyout",
                      d + "/ca.key", "-out", d + "/ca.pem", "-subj", absl::StrCat("/CN=", name),
                      "-days", "1", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                      "keyUsage=critical,keyCertSign,cRLSign"});
      !s.ok()) {
    return s;
  }
  // `openssl ca` (for certificates with dates in the past) keeps its database here.
  if (absl::Status s = WriteFile(d + "/index.txt", ""); !s.ok()) return s;
  if (absl::Status s = WriteFile(d + "/serial", "1000\n"); !s.ok()) return s;
  if (absl::Status s = WriteFile(
          d + "/ca.cnf",
          absl::StrCat("[ca]\ndefault_ca = ca_default\n[ca_default]\ndatabase = ", d,
                       "/index.txt\nnew_certs_dir = ", d, "\nserial = ", d,
                       "/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
                       "unique_subject = no\n[any]\ncommonName = supplied\n"));
      !s.ok()) {
    return s;
  }
  return ca;
}

absl::StatusOr<rpc::TlsFiles> TestCa::Issue(const std::string& file, const std::string& uri,
                                            IssueOptions options) const {
  const std::string base = absl::StrCat(dir_, "/", file);
  rpc::TlsFiles files{.cert = base + ".pem", .key = base + ".key", .ca = ca_file()};
  // Written beside and renamed into place, so a watcher never reads half a file.
  const std::string cert_tmp = base + ".pem.new", key_tmp = base + ".key.new";
  std::vector<std::string> extensions = {"-addext", "basicConstraints=critical,CA:FALSE", "-addext",
                                         "extendedKeyUsage=serverAuth,clientAuth"};
  if (!uri.empty()) {
    extensions.insert(extensions.end(), {"-addext", absl::StrCat("subjectAltName=URI:", uri)});
  }
  const std::string subject =
      absl::StrCat("/CN=", options.common_name.empty() ? file : options.common_name);
  if (!options.expired) {
    std::vector<std::string> args = {
        "req",     "-x509", "-newkey", "ec",     "-pkeyopt",      kCurve,  "-nodes",
        "-keyout", key_tmp, "-out",    cert_tmp, "-subj",         subject, "-days",
        "1",       "-CA",   ca_file(), "-CAkey", dir_ + "/ca.key"};
    args.insert(args.end(), extensions.begin(), extensions.end());
    if (absl::Status s = Openssl(dir_, args); !s.ok()) return s;
  } else {
    std::vector<std::string> args = {"req",         "-new",   "-newkey", "ec",    "-pkeyopt",
                                     kCurve,        "-nodes", "-keyout", key_tmp, "-out",
                                     base + ".csr", "-subj",  subject};
    args.insert(args.end(), extensions.begin(), extensions.end());
    if (absl::Status s = Openssl(dir_, args); !s.ok()) return s;
    if (absl::Status s = Openssl(
            dir_, {"ca", "-batch", "-config", dir_ + "/ca.cnf", "-in", base + ".csr", "-out",
                   cert_tmp, "-cert", ca_file(), "-keyfile", dir_ + "/ca.key", "-startdate",
                   "20200101000000Z", "-enddate", "20200102000000Z", "-notext"});
        !s.ok()) {
      return s;
    }
  }
  if (::rename(key_tmp.c_str(), files.key.c_str()) != 0 ||
      ::rename(cert_tmp.c_str(), files.cert.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename the new files into ", base, ".*"));
  }
  return files;
}

}  // namespace autoscale::testing
