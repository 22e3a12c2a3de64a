"""Every external repository this project uses, all from Debian packages.

Call autoscale_dependencies() in a WORKSPACE (this project's, or one that depends on it through
local_repository) after the repositories that WORKSPACE declares itself: each name here is declared
only if it is not already, so a consumer's own repository of that name is kept (Bazel refuses to
declare a repository after a load(), so "first" would leave the consumer no way to keep its own).
It must run before the end of the WORKSPACE: the stand-ins must be declared before Bazel's built-in
WORKSPACE suffix would download the real ones.
"""

load(":system_libs.bzl", "offline_stub_repository", "system_cc_library")

_ABSL_MODULES = [
    "absl_base",
    "absl_btree",
    "absl_cleanup",
    "absl_flags",
    "absl_flags_parse",
    "absl_flags_usage",
    "absl_flat_hash_map",
    "absl_flat_hash_set",
    "absl_function_ref",
    "absl_hash",
    "absl_inlined_vector",
    "absl_node_hash_map",
    "absl_random_random",
    "absl_span",
    "absl_status",
    "absl_statusor",
    "absl_str_format",
    "absl_strings",
    "absl_synchronization",
    "absl_time",
]

def _maybe(rule, name, **kwargs):
    if not native.existing_rule(name):
        rule(name = name, **kwargs)

def autoscale_dependencies():
    for kind in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        _maybe(offline_stub_repository, kind, kind = kind)

    _maybe(system_cc_library, "absl", hdr_dirs = ["absl"], modules = _ABSL_MODULES)
    _maybe(system_cc_library, "protobuf", hdr_dirs = ["google/protobuf"], modules = ["protobuf"])
    _maybe(system_cc_library, "grpc", hdr_dirs = ["grpc", "grpcpp", "grpc++"], modules = ["grpc++"])
    _maybe(system_cc_library, "gtest", hdr_dirs = ["gtest", "gmock"], modules = ["gmock", "gtest"])
    _maybe(system_cc_library, "gtest_main", modules = ["gtest_main"])
    _maybe(system_cc_library, "benchmark", hdr_dirs = ["benchmark"], modules = ["benchmark"])

    # Debian ships libbenchmark_main.a without a .pc file.
    _maybe(system_cc_library, "benchmark_main", modules = ["benchmark"], extra_linkopts = ["-lbenchmark_main"])
    _maybe(system_cc_library, "rapidjson", hdr_dirs = ["rapidjson"])
    _maybe(system_cc_library, "libcgroup", hdr_dirs = ["libcgroup", "libcgroup.h"], modules = ["libcgroup"])
    _maybe(system_cc_library, "glog", hdr_dirs = ["glog"], modules = ["libglog"])
    _maybe(system_cc_library, "httplib", hdr_dirs = ["httplib.h"], modules = ["cpp-httplib"])
    _maybe(system_cc_library, "libpq", hdr_dirs = [], modules = ["libpq"])

    # libcrypto (libssl-dev, which libgrpc-dev depends on): reading a certificate's URI SAN.
    _maybe(system_cc_library, "openssl", hdr_dirs = ["openssl"], modules = ["libcrypto"])

    # The Python module (//python:autoscale): Debian's python3-dev headers (pkg-config python3:
    # no libraries, an extension resolves them in the interpreter) and the header-only pybind11.
    _maybe(system_cc_library, "python3", hdr_dirs = [], modules = ["python3"])
    _maybe(system_cc_library, "pybind11", hdr_dirs = ["pybind11"], modules = ["pybind11"])
