#!/usr/bin/env python3
"""METRICS.md lists every metric the code registers, and nothing else.

The metric names are the string literals of the daemons' sources ("autoscaling_...",
"autoscale_...", "process_..."); the documented ones are the first column of METRICS.md's tables.
Run by Bazel with METRICS.md as data: the source tree is where that file's runfile points.
"""
import os
import re
import sys

doc = os.path.realpath(sys.argv[1])
root = os.path.dirname(doc)
name = re.compile(r'"((?:autoscaling|autoscale|process)_[a-z0-9_]+)"')
in_code = {}
for top in ("autoscale", "monitor", "examples", "neonvm", "lfc"):
    for d, _, files in os.walk(os.path.join(root, top)):
        for f in files:
            if not f.endswith(".cc") or f.endswith("_test.cc"):
                continue
            path = os.path.join(d, f)
            for m in name.finditer(open(path, encoding="utf-8").read()):
                in_code.setdefault(m.group(1), os.path.relpath(path, root))
documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", open(doc, encoding="utf-8").read(), re.M))
if not in_code:
    sys.exit(f"no metric names found under {root}: is the source tree there?")
failed = False
for m in sorted(set(in_code) - documented):
    print(f"FAIL: {m} (in {in_code[m]}) is not in METRICS.md")
    failed = True
for m in sorted(documented - set(in_code)):
    print(f"FAIL: METRICS.md lists {m}, which no source registers")
    failed = True
print(f"{len(in_code)} metrics in the code, {len(documented)} documented")
sys.exit(1 if failed else 0)
