// Skipping a test that needs what this machine lacks. A test that cannot run here skips with a
// message naming what is missing; it never passes empty. Each "...Missing()" function returns an
// empty string when the thing is there, and otherwise what is missing and how to get it.
//
//   TEST(Vm, Starts) {
//     AUTOSCALE_REQUIRE_QEMU();
//     ...
//   }
//   TEST(Cluster, Scales) {
//     AUTOSCALE_REQUIRE(ClusterMissing());   // any "...Missing()" of the fixtures
//     ...
//   }
//
// The fixtures add their own: AUTOSCALE_REQUIRE_GUEST (vm.h), AUTOSCALE_REQUIRE_CGROUP_V1
// (cgroup.h), AUTOSCALE_REQUIRE_POSTGRES (postgres_test_server.h).
#pragma once

#include <string>

#include "gtest/gtest.h"

// Skips the test unless `missing` (a std::string expression) is empty.
#define AUTOSCALE_REQUIRE(missing)                                                       \
  do {                                                                                   \
    if (std::string autoscale_why_missing = (missing); !autoscale_why_missing.empty()) { \
      GTEST_SKIP() << autoscale_why_missing;                                             \
    }                                                                                    \
  } while (0)

#define AUTOSCALE_REQUIRE_QEMU() AUTOSCALE_REQUIRE(::autoscale::testing::QemuMissing())
#define AUTOSCALE_REQUIRE_ROOT() AUTOSCALE_REQUIRE(::autoscale::testing::RootMissing())

namespace autoscale::testing {

// QEMU 10 or newer (qemu-system-x86_64 in PATH).
std::string QemuMissing();
// Running as root (for user switches, cgroups).
std::string RootMissing();

}  // namespace autoscale::testing
