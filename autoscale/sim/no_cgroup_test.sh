#!/bin/sh
# The simulator's dependencies (a genquery of deps(//autoscale/sim:sim)) hold no cgroup code.
set -u
deps=$1
fail() { echo "FAIL: $*"; exit 1; }
# The list is real: it names the simulator and the core it runs.
grep -qx "//autoscale/sim:sim" "$deps" || fail "no //autoscale/sim:sim in $deps: $(head -5 "$deps")"
grep -qx "//autoscale/core:core" "$deps" || fail "no //autoscale/core:core in $deps"
bad=$(grep -E "libcgroup|^//monitor/cgroup[:/]|^//monitor:monitor$" "$deps")
[ -z "$bad" ] || fail "the simulator depends on cgroup code: $bad"
echo PASS
