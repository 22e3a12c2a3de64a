// TestCa: a throwaway certificate authority made at test time with Debian's openssl, issuing
// SPIFFE-style certificates (an EC key, the identity as the URI SAN) for mutual TLS tests and
// for the demo cluster.
//
//   ASSIGN_OR_RETURN(TestCa ca, TestCa::Create(dir.path() + "/ca"));
//   ASSIGN_OR_RETURN(rpc::TlsFiles a, ca.Issue("node-a", "spiffe://test/node/a"));
//   ASSIGN_OR_RETURN(rpc::TlsFiles old, ca.Issue("old", "spiffe://test/admin", {.expired = true}));
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "autoscale/rpc/tls.h"
#include "autoscale/testing/skip.h"

#define AUTOSCALE_REQUIRE_OPENSSL() AUTOSCALE_REQUIRE(::autoscale::testing::OpensslMissing())

namespace autoscale::testing {

// The openssl binary (in PATH), or why it is missing.
std::string OpensslMissing();

struct IssueOptions {
  // Valid only in 2020: refused by any verifier.
  bool expired = false;
  // The subject's CN; empty: the file name.
  std::string common_name{};
};

class TestCa {
 public:
  // Makes a CA (key and self-signed certificate, valid one day) in `dir` (created if missing).
  // Errors carry openssl's output.
  static absl::StatusOr<TestCa> Create(std::string dir, const std::string& name = "test-ca");

  // A key and a certificate for `uri` (the URI SAN; "" for none) signed by this CA, written to
  // dir/<file>.key and dir/<file>.pem; the files returned name this CA as the CA. Issuing to a
  // file name again replaces the files (a rotation).
  absl::StatusOr<rpc::TlsFiles> Issue(const std::string& file, const std::string& uri,
                                      IssueOptions options = {}) const;

  const std::string& dir() const { return dir_; }
  // The CA's certificate (PEM).
  std::string ca_file() const { return dir_ + "/ca.pem"; }

 private:
  explicit TestCa(std::string dir) : dir_(std::move(dir)) {}
  const std::string dir_;
};

}  // namespace autoscale::testing
