// EtcdCluster: a private etcd cluster (Debian's etcd-server, 3.4) on loopback for tests and
// benchmarks. Each member gets two free ports (client, peer), its own data directory and log
// under one temporary directory, and the cluster a token of its own, so clusters of concurrent
// tests never meet. Start returns once every member answers a linearizable read (a leader is
// elected), within a timeout. Members can be killed, stopped and restarted (same flags, same
// data); the destructor kills every member (SIGKILL: a clean stop of a 3-member cluster takes
// 7-9 s of leadership hand-over), waits for them and removes the directory. Members die with the
// test process too (autoscale/base/subprocess.h).
//
//   AUTOSCALE_REQUIRE_ETCD();
//   absl::StatusOr<std::unique_ptr<EtcdCluster>> etcd = EtcdCluster::Start({.members = 3});
//   ASSERT_TRUE(etcd.ok()) << etcd.status();
//   auto client = *ledger::etcd::EtcdClient::Connect((*etcd)->ClientOptions());
//   (*etcd)->Kill(*(*etcd)->Leader());    // the others elect a new leader
//   ASSERT_TRUE((*etcd)->Restart(0).ok());
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autoscale/base/subprocess.h"
#include "autoscale/ledger/etcd/client.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"

// Skips the test unless etcd is installed.
#define AUTOSCALE_REQUIRE_ETCD() AUTOSCALE_REQUIRE(::autoscale::testing::EtcdMissing())

namespace autoscale::testing {

// Empty when `etcd` (3.4 or newer) is in PATH; else what is missing.
std::string EtcdMissing();

struct EtcdClusterOptions {
  int members = 3;
  // Raft timings (etcd's defaults). The shortest lease a cluster grants is 1.5 election timeouts.
  absl::Duration heartbeat = absl::Milliseconds(100);
  absl::Duration election = absl::Milliseconds(1000);
  // Client URLs over TLS, with client certificates required (made with openssl for the cluster).
  bool tls = false;
  absl::Duration start_timeout = absl::Seconds(30);
};

class EtcdCluster {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(EtcdClusterOptions options = {});
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:port" of each member's client URL, and all of them comma-joined (the scheduler's
  // --store=etcd:...).
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  std::string Endpoints() const;
  // What a client needs: the endpoints, and with TLS the CA and a client certificate and key.
  ledger::etcd::EtcdOptions ClientOptions() const;
  // The directory holding the members' data, logs and certificates.
  const std::string& dir() const { return dir_.path(); }

  // SIGKILL, and waits for the exit.
  void Kill(int member);
  // Sends `sig` (SIGSTOP, SIGCONT) to a running member.
  void Signal(int member, int sig);
  // Starts a member that was killed again with its flags and data, and waits until the cluster
  // answers through it.
  absl::Status Restart(int member);
  bool Running(int member);
  // The member that is the raft leader now.
  absl::StatusOr<int> Leader();
  // Waits until every running member answers a linearizable read.
  absl::Status WaitServing(absl::Duration timeout);
  std::string LogTail(int member, size_t bytes = 3000) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::vector<std::string> argv;
    std::string log;
    std::unique_ptr<Subprocess> process;
  };

  explicit EtcdCluster(EtcdClusterOptions options) : options_(options) {}
  absl::Status MakeCertificates();
  absl::Status StartMembers(int attempt);
  absl::Status WaitMember(int member, absl::Time deadline);

  const EtcdClusterOptions options_;
  TempDir dir_{"etcd"};
  std::vector<Member> members_;
  std::vector<std::string> endpoints_;
  std::string ca_, cert_, key_;
};

}  // namespace autoscale::testing
