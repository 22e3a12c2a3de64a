"""Fuzz targets for parsers of outside input.

    cc_fuzz_test(
        name = "goal_input_fuzz",
        srcs = ["goal_input_fuzz.cc"],      # defines LLVMFuzzerTestOneInput
        deps = [":goal_input"],
        corpus = glob(["testdata/goal_corpus/*"]),
    )

gives two targets:
  * `<name>`: a cc_test that runs every corpus file, then a fixed number of seeded random mutations
    of them, through the target. It runs in every `bazel test //...` (and under --config=asan).
  * `<name>_libfuzzer`: the same target linked with libFuzzer for open-ended coverage-guided
    fuzzing; build it with clang: `bazel run --config=fuzz //pkg:<name>_libfuzzer -- DIR`.
"""

def cc_fuzz_test(name, srcs, deps = [], corpus = [], iterations = 20000, **kwargs):
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + [Label("//autoscale/base:fuzz_main")],
        data = corpus,
        args = ["--iterations=%d" % iterations] + ["$(location %s)" % c for c in corpus],
        **kwargs
    )
    native.cc_binary(
        name = name + "_libfuzzer",
        srcs = srcs,
        deps = deps,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        testonly = True,
    )
