// For the end-to-end tests: skip (naming what is missing) when the cluster cannot run here.
#pragma once

#include <string>

#include "autoscale/testing/cluster_status.h"
#include "gtest/gtest.h"

#define DEMO_REQUIRE_CLUSTER()                                                  \
  do {                                                                          \
    if (std::string why = ::autoscale::testing::ClusterMissing(); !why.empty()) \
      GTEST_SKIP() << why;                                                      \
  } while (0)
