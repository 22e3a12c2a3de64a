#!/bin/sh
# The binary end to end: a small run writes a summary, a CSV and an HTML report; a comparison
# writes both runs, and more compared runs write theirs with the summary JSON and series CSVs; a
# trace drives a run; the LFC goal runs and is reported; bad input (a malformed trace row, a bad config, a bad flag) exits 2 naming
# what is wrong.
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

# Data out: N-way comparison (the flag repeated), the summary as JSON, the series CSV of each run.
echo '{"maxDownscaleStepCu": 1}' >"$out/step1.json"
"$bin" --vms=30 --nodes=2 --duration=20m --html="$out/n.html" --csv= \
  --compare_config=examples/simulate/stable.json --compare_config="$out/step1.json" \
  --compare_config=examples/simulate/stable.json --summary_json="$out/s.json" \
  --series_csv="$out/series.csv" --series_interval=1m >"$out/summary.txt" 2>"$out/err.txt" ||
  fail "N-way run exited $?: $(cat "$out/err.txt")"
[ "$(grep -o '"label": ' "$out/s.json" | wc -l)" -eq 4 ] || fail "summary JSON: $(cat "$out/s.json")"
grep -q '"label": "stable.json (2)"' "$out/s.json" || fail "repeated config label: $(cat "$out/s.json")"
for f in series.csv series.compare.csv series.compare2.csv series.compare3.csv; do
  # 20 one-minute samples, each the fleet and two nodes, and the header.
  [ "$(wc -l <"$out/$f")" -eq $((20 * 3 + 1)) ] || fail "$f: $(wc -l <"$out/$f") lines"
done
grep -q '^60.000,fleet,' "$out/series.csv" || fail "series CSV: $(head -3 "$out/series.csv")"
for label in "allocated (default)" "allocated (step1.json)" "allocated (stable.json (2))"; do
  grep -qF "$label" "$out/n.html" || fail "the report lacks '$label'"
done
# The LFC goal: with enableLFCMetrics the LFC part decides goals, and the summary, its JSON and
# the report say how often; the compared run without it says "LFC off".
"$bin" --vms=20 --nodes=1 --duration=1h --config=$data/lfc.json --lfc_base_gib=4:8 \
  --compare_config=examples/simulate/stable.json --html="$out/l.html" --csv= \
  --summary_json="$out/l.json" >"$out/summary.txt" 2>"$out/err.txt" ||
  fail "LFC run exited $?: $(cat "$out/err.txt")"
line=$(grep "^goal decided by: CPU / memory / memory+LFC cache / LFC" "$out/summary.txt")
lfc_pct=$(echo "$line" | awk '{print $18}')  # the first run's LFC share
case "$lfc_pct" in
  0.00%|""|LFC) fail "the LFC part decided no goal: $line" ;;
esac
echo "$line" | grep -q "LFC off" || fail "the run without enableLFCMetrics: $line"
grep -q '"lfc_enabled": true' "$out/l.json" || fail "summary JSON: LFC not enabled"
grep -q '"goal_by_lfc": [1-9]' "$out/l.json" || fail "summary JSON: no goal_by_lfc"
grep -q "LFC" "$out/l.html" || fail "the report lacks the LFC part"
"$bin" --vms=20 --nodes=1 --duration=10m --html= --csv= --lfc_base_gib=4:2 >/dev/null 2>"$out/err.txt"
grep -q "base_gib" "$out/err.txt" || fail "bad working set range: $(cat "$out/err.txt")"

"$bin" --trace=$data/trace.csv --nodes=1 --html= --csv="$out/t.csv" >"$out/summary.txt" 2>&1 ||
  fail "trace run exited $?: $(cat "$out/summary.txt")"
# The trace drove the run: one CSV row per VM of the trace, and db-1's peak demand is the
# largest of its samples (cores; MiB as GiB).
[ "$(wc -l <"$out/t.csv")" -eq 4 ] || fail "trace CSV: $(cat "$out/t.csv")"
want=$(awk -F, '$2 == "db-1" { if ($3 > c) c = $3; if ($4 > m) m = $4 }
  END { printf "db-1,trace,%.6g,%.6g", c, m / 1024 }' $data/trace.csv)
got=$(awk -F, '$1 == "db-1" { printf "%s,%s,%s,%s", $1, $2, $8, $9 }' "$out/t.csv")
[ "$got" = "$want" ] || fail "trace CSV: db-1 peak demand '$got', want '$want'"

"$bin" --trace=$data/bad_trace.csv --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "malformed trace exited $rc, want 2"
grep -q "bad_trace.csv:4: cpu_cores: '0.x' is not a number" "$out/err.txt" ||
  fail "malformed trace message: $(cat "$out/err.txt")"

"$bin" --config=$data/bad_config.json --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "bad config exited $rc, want 2"
grep -q "memoryUsageFractionTarget" "$out/err.txt" || fail "bad config message: $(cat "$out/err.txt")"

"$bin" --node_cpus=nan --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "--node_cpus=nan exited $rc, want 2"
grep -q "node_cpus must be in \[0.001, 1e+06\], got nan" "$out/err.txt" ||
  fail "bad flag message: $(cat "$out/err.txt")"

"$bin" --workload=diurnal:1,weekly:1 --html= --csv= >/dev/null 2>"$out/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "bad workload exited $rc, want 2"
grep -q "weekly" "$out/err.txt" || fail "bad workload message: $(cat "$out/err.txt")"
echo PASS
