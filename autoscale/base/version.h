// The project's version ("0.2.0"): the top-level VERSION file, compiled into every binary at
// build time (a genrule in autoscale/base/BUILD.bazel), so `agent --version` says which release
// runs.
#pragma once

namespace autoscale {

const char* Version();

}  // namespace autoscale
