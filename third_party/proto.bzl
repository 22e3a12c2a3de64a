"""C++ (and gRPC C++) code generation from .proto files with Debian's /usr/bin/protoc and
/usr/bin/grpc_cpp_plugin: rules_proto and native proto_library need sources that cannot be
downloaded here.

    cc_proto(
        name = "api_cc_proto",
        srcs = ["resources.proto", "config.proto"],
    )
    cc_grpc(
        name = "scheduler_cc_grpc",
        srcs = ["scheduler.proto"],
        proto = ":api_cc_proto",
    )

Import paths are relative to the repository root (`import "autoscale/api/resources.proto";`), and
so are the generated headers (`#include "autoscale/api/resources.pb.h"`), also when this project
is used as an external repository. google/protobuf/*.proto come from /usr/include.
"""

def _repo_root():
    # "external/<name>" when this package lives in an external repository, "." otherwise.
    repo = native.repository_name()
    return "." if repo == "@" else "external/" + repo[1:]

def _protoc(name, srcs, imports, outs, flags):
    # srcs and imports may overlap (a grpc target's own file is among its proto's files).
    root = _repo_root()
    out = "$(GENDIR)" if root == "." else "$(GENDIR)/" + root
    native.genrule(
        name = name,
        srcs = depset(srcs + imports).to_list(),
        outs = outs,
        cmd = "/usr/bin/protoc -I%s %s %s" % (
            root,
            " ".join([f.format(out = out) for f in flags]),
            " ".join(["$(location %s)" % s for s in srcs]),
        ),
    )

def cc_proto(name, srcs, deps = [], **kwargs):
    """Compiles srcs (.proto files of this package) to a cc_library of messages.

    deps: the cc_proto targets that compile the .proto files srcs import.
    Also defines <name>_protos, the .proto files of srcs and of all deps, for protoc.
    """
    bases = [s[:-len(".proto")] for s in srcs]
    hdrs = [b + ".pb.h" for b in bases]
    ccs = [b + ".pb.cc" for b in bases]
    imports = [d + "_protos" for d in deps]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + imports,
        visibility = kwargs.get("visibility"),
    )
    _protoc(name + "_gen", srcs, imports, hdrs + ccs, ["--cpp_out={out}"])
    native.cc_library(
        name = name,
        srcs = ccs,
        hdrs = hdrs,
        deps = deps + ["@protobuf"],
        **kwargs
    )

def cc_grpc(name, srcs, proto, **kwargs):
    """Generates the gRPC C++ stubs of the services in srcs, whose messages are compiled by the
    cc_proto target `proto` (so no message is compiled twice)."""
    bases = [s[:-len(".proto")] for s in srcs]
    hdrs = [b + ".grpc.pb.h" for b in bases]
    ccs = [b + ".grpc.pb.cc" for b in bases]
    _protoc(name + "_gen", srcs, [proto + "_protos"], hdrs + ccs, [
        "--grpc_out={out}",
        "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
    ])
    native.cc_library(
        name = name,
        srcs = ccs,
        hdrs = hdrs,
        deps = [proto, "@grpc"],
        **kwargs
    )
