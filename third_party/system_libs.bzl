"""A repository rule that exposes a Debian system library to Bazel, found with pkg-config.

    system_cc_library(
        name = "absl",
        modules = ["absl_status", "absl_strings"],
        hdr_dirs = ["absl"],
    )

gives `@absl` (a cc_library) whose link flags come from `pkg-config --libs`, whose `-D`/`-I` flags
come from `pkg-config --cflags`, and whose headers under /usr/include/<hdr_dirs> are declared as
inputs, so an upgrade of the Debian package rebuilds what uses it. Nothing is downloaded.
"""

def _split(s):
    return [f for f in s.strip().split(" ") if f]

def _pkg_config(rctx, args):
    pc = rctx.which("pkg-config")
    if pc == None:
        fail("pkg-config not found: run scripts/setup (or apt-get install pkg-config)")
    res = rctx.execute([pc] + args + rctx.attr.modules)
    if res.return_code != 0:
        fail("pkg-config %s %s failed (is the -dev package installed? run scripts/setup):\n%s" %
             (" ".join(args), " ".join(rctx.attr.modules), res.stderr))
    return _split(res.stdout)

def _system_cc_library_impl(rctx):
    linkopts = []
    defines = []
    includes = ["include"]
    hdr_globs = []
    if rctx.attr.modules:
        linkopts = _pkg_config(rctx, ["--libs"])
        for flag in _pkg_config(rctx, ["--cflags"]):
            if flag.startswith("-D"):
                defines.append(flag[2:])
            elif flag.startswith("-I"):
                # Extra include directories (libpq: /usr/include/postgresql) are linked in.
                d = "inc%d" % len(includes)
                rctx.symlink(flag[2:], d)
                includes.append(d)
                hdr_globs.append(d + "/**")
    linkopts += rctx.attr.extra_linkopts
    for d in rctx.attr.hdr_dirs:
        src = rctx.path(rctx.attr.include_root + "/" + d)
        if not src.exists:
            fail("%s not found (is the -dev package installed? run scripts/setup)" % src)
        rctx.symlink(src, "include/" + d)

        # Bazel 4's path object has no is_dir.
        is_dir = rctx.execute(["test", "-d", str(src)]).return_code == 0
        hdr_globs.append("include/%s/**" % d if is_dir else "include/" + d)
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD.bazel", """package(default_visibility = ["//visibility:public"])

cc_library(
    name = "{name}",
    hdrs = glob({globs}, allow_empty = True),
    defines = {defines},
    includes = {includes},
    linkopts = {linkopts},
)
""".format(
        name = rctx.name,
        globs = repr(hdr_globs),
        defines = repr(defines),
        includes = repr(includes),
        linkopts = repr(linkopts),
    ))

system_cc_library = repository_rule(
    implementation = _system_cc_library_impl,
    local = True,
    attrs = {
        "modules": attr.string_list(doc = "pkg-config module names"),
        "hdr_dirs": attr.string_list(doc = "directories or files under include_root"),
        "include_root": attr.string(default = "/usr/include"),
        "extra_linkopts": attr.string_list(),
    },
)

# Offline stand-ins for the repositories that Bazel 4.2.3's built-in WORKSPACE suffix would
# download: its @bazel_tools loads @rules_cc and @rules_java, and every test rule references
# @remote_coverage_tools. Declared before the suffix runs, they win over its maybe(http_archive).
_STUBS = {
    "rules_cc": {
        "BUILD.bazel": "",
        "cc/BUILD.bazel": """package(default_visibility = ["//visibility:public"])
alias(name = "toolchain_type", actual = "@bazel_tools//tools/cpp:toolchain_type")
""",
        "cc/defs.bzl": "\n".join([
            "def %s(**attrs):\n    native.%s(**attrs)\n" % (r, r)
            for r in [
                "cc_binary",
                "cc_library",
                "cc_test",
                "cc_import",
                "cc_proto_library",
                "cc_toolchain",
                "cc_toolchain_suite",
                "fdo_profile",
                "fdo_prefetch_hints",
                "objc_library",
                "objc_import",
            ]
        ]),
    },
    "rules_java": {
        "BUILD.bazel": "",
        "java/BUILD.bazel": 'package(default_visibility = ["//visibility:public"])\n',
        "java/defs.bzl": "\n".join([
            "def %s(**attrs):\n    native.%s(**attrs)\n" % (r, r)
            for r in [
                "java_binary",
                "java_import",
                "java_library",
                "java_plugin",
                "java_test",
                "java_proto_library",
                "java_lite_proto_library",
                "java_runtime",
                "java_toolchain",
                "java_package_configuration",
            ]
        ]),
    },
    "remote_coverage_tools": {
        "BUILD.bazel": """package(default_visibility = ["//visibility:public"])
sh_binary(name = "lcov_merger", srcs = ["unsupported.sh"])
sh_binary(name = "coverage_report_generator", srcs = ["unsupported.sh"])
""",
        "unsupported.sh": "#!/bin/sh\necho 'coverage is not available offline' >&2\nexit 1\n",
    },
}

def _offline_stub_impl(rctx):
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    for path, content in _STUBS[rctx.attr.kind].items():
        rctx.file(path, content, executable = path.endswith(".sh"))

offline_stub_repository = repository_rule(
    implementation = _offline_stub_impl,
    attrs = {"kind": attr.string(mandatory = True, values = _STUBS.keys())},
)
