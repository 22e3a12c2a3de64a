#include "autoscale/testing/etcd_cluster.h"

#include <stdio.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "autoscale/base/status_macros.h"
#include "autoscale/testing/free_port.h"
#include "glog/logging.h"

namespace autoscale::testing {
namespace {

std::string ReadTail(const std::string& path, size_t bytes) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

absl::Status Run(const std::vector<std::string>& argv, const std::string& log) {
  SpawnOptions o;
  o.output_file = log;
  ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> p, Subprocess::Start(argv, o));
  ASSIGN_OR_RETURN(int status, p->Wait(absl::Seconds(30)));
  if (ExitCode(status) != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": ",
                                            DescribeWaitStatus(status), "; ", ReadTail(log, 1000)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string EtcdMissing() {
  FILE* p = popen("etcd --version 2>/dev/null", "r");
  char line[256] = {0};
  if (p != nullptr) {
    if (fgets(line, sizeof(line), p) == nullptr) line[0] = '\0';
    pclose(p);
  }
  // "etcd Version: 3.4.23"
  constexpr char kPrefix[] = "etcd Version: ";
  std::string text = line;
  int major = 0, minor = 0;
  const size_t dot = text.find('.');
  if (!absl::StartsWith(text, kPrefix) || dot == std::string::npos ||
      !absl::SimpleAtoi(text.substr(sizeof(kPrefix) - 1, dot - sizeof(kPrefix) + 1), &major) ||
      !absl::SimpleAtoi(text.substr(dot + 1, text.find('.', dot + 1) - dot - 1), &minor)) {
    return "etcd is not installed (scripts/setup installs Debian's etcd-server)";
  }
  if (major < 3 || (major == 3 && minor < 4)) {
    return absl::StrCat("etcd is version ", major, ".", minor, "; these tests need 3.4 or newer");
  }
  return "";
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(EtcdClusterOptions options) {
  if (std::string missing = EtcdMissing(); !missing.empty()) {
    return absl::FailedPreconditionError(missing);
  }
  if (options.members < 1) return absl::InvalidArgumentError("an etcd cluster needs a member");
  std::unique_ptr<EtcdCluster> c(new EtcdCluster(options));
  if (options.tls) RETURN_IF_ERROR(c->MakeCertificates());
  absl::Status s;
  // A port taken between choosing it and etcd binding it fails the start: choose again.
  for (int attempt = 0; attempt < 3; ++attempt) {
    s = c->StartMembers(attempt);
    if (s.ok()) return c;
    LOG(WARNING) << "etcd cluster, attempt " << attempt + 1 << ": " << s;
    for (Member& m : c->members_) {
      if (m.process) m.process->Kill();
    }
  }
  return s;
}

absl::Status EtcdCluster::MakeCertificates() {
  const std::string d = dir_.path();
  const std::string log = d + "/openssl.log";
  {
    std::ofstream server(d + "/server.ext");
    server << "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n";
    std::ofstream client(d + "/client.ext");
    client << "extendedKeyUsage=clientAuth\n";
  }
  auto key = [&](const std::string& name) {
    return std::vector<std::string>{"openssl",
                                    "req",
                                    "-newkey",
                                    "ec",
                                    "-pkeyopt",
                                    "ec_paramgen_curve:prime256v1",
                                    "-nodes",
                                    "-keyout",
                                    d + "/" + name + ".key",
                                    "-subj",
                                    "/CN=autoscale-test-" + name};
  };
  std::vector<std::string> ca = key("ca");
  ca.insert(ca.begin() + 2, "-x509");
  for (const char* arg : {"-days", "2", "-out"}) ca.push_back(arg);
  ca.push_back(d + "/ca.pem");
  RETURN_IF_ERROR(Run(ca, log));
  for (const std::string name : {"server", "client"}) {
    std::vector<std::string> req = key(name);
    req.push_back("-out");
    req.push_back(d + "/" + name + ".csr");
    RETURN_IF_ERROR(Run(req, log));
    RETURN_IF_ERROR(Run({"openssl", "x509", "-req", "-in", d + "/" + name + ".csr", "-CA",
                         d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial", "-days", "2",
                         "-extfile", d + "/" + name + ".ext", "-out", d + "/" + name + ".pem"},
                        log));
  }
  ca_ = d + "/ca.pem";
  cert_ = d + "/client.pem";
  key_ = d + "/client.key";
  return absl::OkStatus();
}

absl::Status EtcdCluster::StartMembers(int attempt) {
  const std::string scheme = options_.tls ? "https://" : "http://";
  members_.clear();
  endpoints_.clear();
  members_.resize(options_.members);
  std::vector<std::string> initial;
  for (int i = 0; i < options_.members; ++i) {
    Member& m = members_[i];
    m.name = absl::StrCat("m", i);
    ASSIGN_OR_RETURN(m.client_port, FreePort());
    ASSIGN_OR_RETURN(m.peer_port, FreePort());
    initial.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
    endpoints_.push_back(absl::StrCat("127.0.0.1:", m.client_port));
  }
  // Unique per cluster: member ids derive from names, peer URLs and this token.
  std::random_device random;
  const std::string token = absl::StrCat("autoscale-", getpid(), "-", random(), "-", attempt);
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  for (int i = 0; i < options_.members; ++i) {
    Member& m = members_[i];
    const std::string data = absl::StrCat(dir_.path(), "/", m.name, "-", attempt, ".data");
    const std::string client = absl::StrCat(scheme, "127.0.0.1:", m.client_port);
    const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
    m.argv = {"etcd",
              "--name=" + m.name,
              "--data-dir=" + data,
              "--listen-client-urls=" + client,
              "--advertise-client-urls=" + client,
              "--listen-peer-urls=" + peer,
              "--initial-advertise-peer-urls=" + peer,
              "--initial-cluster=" + absl::StrJoin(initial, ","),
              "--initial-cluster-token=" + token,
              "--initial-cluster-state=new",
              absl::StrCat("--heartbeat-interval=", absl::ToInt64Milliseconds(options_.heartbeat)),
              absl::StrCat("--election-timeout=", absl::ToInt64Milliseconds(options_.election)),
              "--logger=zap"};
    if (options_.tls) {
      const std::string d = dir_.path();
      for (const std::string& flag :
           {"--cert-file=" + d + "/server.pem", "--key-file=" + d + "/server.key",
            "--trusted-ca-file=" + d + "/ca.pem", std::string("--client-cert-auth")}) {
        m.argv.push_back(flag);
      }
    }
    m.log = absl::StrCat(dir_.path(), "/", m.name, ".log");
    SpawnOptions o;
    o.output_file = m.log;
    ASSIGN_OR_RETURN(m.process, Subprocess::Start(m.argv, o));
  }
  for (int i = 0; i < options_.members; ++i) RETURN_IF_ERROR(WaitMember(i, deadline));
  return absl::OkStatus();
}

absl::Status EtcdCluster::WaitMember(int member, absl::Time deadline) {
  Member& m = members_[member];
  ledger::etcd::EtcdOptions o = ClientOptions();
  o.endpoints = {endpoints_[member]};
  o.timeout = absl::Milliseconds(500);
  etcdserverpb::RangeRequest probe;
  probe.set_key("/autoscale-test/probe");
  absl::Status last;
  while (absl::Now() < deadline) {
    if (!m.process->Running()) {
      return absl::UnavailableError(absl::StrCat("etcd member ", m.name, " ",
                                                 DescribeWaitStatus(*m.process->wait_status()),
                                                 "; its log:\n", LogTail(member)));
    }
    // Linearizable: answered only once the member knows a leader. A connection made while the
    // member starts can stall for seconds after it is ready: each probe makes a new one.
    ASSIGN_OR_RETURN(std::shared_ptr<ledger::etcd::EtcdClient> client,
                     ledger::etcd::EtcdClient::Connect(o));
    last = client->Range(probe).status();
    if (last.ok()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd member ", m.name, " at ", endpoints_[member],
                   " does not serve: ", last.ToString(), "; its log:\n", LogTail(member)));
}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_) {
    if (m.process) m.process->Kill();  // waits for the exit
  }
}

std::string EtcdCluster::Endpoints() const { return absl::StrJoin(endpoints_, ","); }

ledger::etcd::EtcdOptions EtcdCluster::ClientOptions() const {
  return {.endpoints = endpoints_, .ca_file = ca_, .cert_file = cert_, .key_file = key_};
}

void EtcdCluster::Kill(int member) { members_.at(member).process->Kill(); }

void EtcdCluster::Signal(int member, int sig) { members_.at(member).process->Signal(sig); }

bool EtcdCluster::Running(int member) { return members_.at(member).process->Running(); }

absl::Status EtcdCluster::Restart(int member) {
  Member& m = members_.at(member);
  m.process->Kill();
  SpawnOptions o;
  o.output_file = m.log;
  ASSIGN_OR_RETURN(m.process, Subprocess::Start(m.argv, o));
  return WaitMember(member, absl::Now() + options_.start_timeout);
}

absl::StatusOr<int> EtcdCluster::Leader() {
  ASSIGN_OR_RETURN(std::shared_ptr<ledger::etcd::EtcdClient> client,
                   ledger::etcd::EtcdClient::Connect(ClientOptions()));
  std::vector<uint64_t> ids(members_.size(), 0);
  uint64_t leader = 0;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!Running(i)) continue;
    absl::StatusOr<etcdserverpb::StatusResponse> s = client->MemberStatus(endpoints_[i]);
    if (!s.ok()) continue;
    ids[i] = s->header().member_id();
    if (s->leader() != 0) leader = s->leader();
  }
  for (size_t i = 0; i < members_.size(); ++i) {
    if (leader != 0 && ids[i] == leader) return static_cast<int>(i);
  }
  return absl::UnavailableError("no etcd member reports a leader among the running members");
}

absl::Status EtcdCluster::WaitServing(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (Running(i)) RETURN_IF_ERROR(WaitMember(i, deadline));
  }
  return absl::OkStatus();
}

std::string EtcdCluster::LogTail(int member, size_t bytes) const {
  return ReadTail(members_.at(member).log, bytes);
}

}  // namespace autoscale::testing
