#!/bin/sh
# The binary end to end: a small run writes a summary, a CSV and an HTML report; a comparison
# writes both runs; bad input (a malformed trace row, a bad config) exits 2 naming what is wrong.
set -u
bin=$1
data=examples/simulate/testdata
out=${TEST_TMPDIR:-/tmp}
fail() { echo "FAIL: $*"; exit 1; }

"$bin" --vms=40 --nodes=2 --duration=30m --html="$out/r.html" --csv="$out/r.csv" \
  --compare_config=examples/simulate/stable.json >"$out/summary.txt" 2>"$out/err.txt" ||
  fail "small run exited $?: $(cat "$out/err.txt")"
grep -q "CU-hours allocated" "$out/summary.txt" || fail "no summary: $(cat "$out/summary.txt")"
grep -q "stable.json" "$out/summary.txt" || fail "no compared run in the summary"
[ "$(wc -l <"$out/r.csv")" -eq 41 ] || fail "CSV: $(wc -l <"$out/r.csv") lines, want 41"
[ "$(wc -l <"$out/r.compare.csv")" -eq 41 ] || fail "no CSV of the compared run"
grep -q "</html>" "$out/r.html" || fail "HTML report incomplete"
[ "$(grep -o "<svg" "$out/r.html" | wc -l)" -ge 8 ] || fail "HTML report without its plots"
[ -s "$out/err.txt" ] && fail "a short run off a terminal printed on stderr: $(cat "$out/err.txt")"

"$bin" --trace=$data/trace.csv --nodes=1 --html= --csv="$out/t.csv" >"$out/summary.txt" 2>&1 ||
  fail "trace run exited $?: $(cat "$out/summary.txt")"
grep -q "3 / 1" "$out/summary.txt" || fail "trace run: $(cat "$out/summary.txt")"
grep -q "^db-1,trace," "$out/t.csv" || fail "trace CSV: $(cat "$out/t.csv")"

"$bin" --trace=$data/bad_trace.csv --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "malformed trace exited $rc, want 2"
grep -q "bad_trace.csv:4: cpu_cores: '0.x' is not a number" "$out/err.txt" ||
  fail "malformed trace message: $(cat "$out/err.txt")"

"$bin" --config=$data/bad_config.json --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "bad config exited $rc, want 2"
grep -q "memoryUsageFractionTarget" "$out/err.txt" || fail "bad config message: $(cat "$out/err.txt")"

"$bin" --workload=diurnal:1,weekly:1 --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "bad workload exited $rc, want 2"
grep -q "weekly" "$out/err.txt" || fail "bad workload message: $(cat "$out/err.txt")"
echo PASS
