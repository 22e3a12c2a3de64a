#!/bin/sh
# The binary: JSON on stdin, JSON on stdout, exit 0; bad input: message on stderr, exit 2.
set -u
bin=$1
data=examples/goal/testdata
fail() { echo "FAIL: $*"; exit 1; }

out=$("$bin" < $data/worked_example.json) || fail "worked example exited $?"
echo "$out" | grep -q '"goalCu":4' || fail "worked example: $out"

"$bin" < $data/bad_json.json 2>err.txt >/dev/null; rc=$?
[ $rc -eq 2 ] || fail "bad JSON exited $rc, want 2"
grep -q "JSON syntax error" err.txt || fail "bad JSON message: $(cat err.txt)"

"$bin" < $data/bad_range.json 2>err.txt >/dev/null; rc=$?
[ $rc -eq 2 ] || fail "out-of-range exited $rc, want 2"
grep -q "loadAverageFractionTarget" err.txt || fail "out-of-range message: $(cat err.txt)"
# Once overflowed validation (minWait + window - 1) and then ComputeGoal; now refused, naming it.
"$bin" < $data/overflow.json 2>err.txt >/dev/null; rc=$?
[ $rc -eq 2 ] || fail "overflowing config exited $rc, want 2"
grep -q "lfcMinWaitBeforeDownscaleMinutes" err.txt || fail "overflow message: $(cat err.txt)"
echo PASS
