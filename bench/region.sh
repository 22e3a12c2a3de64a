#!/usr/bin/env bash
# Region-sized fleets: one simulated day (24 h at 5 s steps) of N VMs on 4,000 nodes of 48 vCPU /
# 192 GiB with the default workload mix, VMs spread over the nodes (--placement=spread), on every
# core. Prints one line per run: VMs, mode, wall seconds, CPU seconds, peak RSS, VM-steps/s and
# the load average (1 min) before and after.
# "skip" is the simulator as it runs by default (agents with nothing to decide are not asked);
# "step" (--step_every_vm) asks every agent at every metrics arrival: the baseline, with the same
# results.
#
# DURATION (default 24h) shortens the simulated time; SIMULATE names another binary (a copy of
# the previous commit's, for a before/after comparison on the same machine state).
#
#   bazel build -c opt //examples/simulate
#   bench/region.sh 1000:skip 1000:step 10000:skip 10000:step 100000:skip
#   DURATION=2h SIMULATE=/tmp/simulate.before bench/region.sh 100000:skip
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SIMULATE:-bazel-bin/examples/simulate/simulate}
duration=${DURATION:-24h}
[ -x "$bin" ] || { echo "build it first: bazel build -c opt //examples/simulate" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-8s %-5s %9s %9s %10s %12s  %s\n' vms mode wall_s cpu_s peak_mib vm_steps/s "load (start, end)"
for run in "$@"; do
  vms=${run%%:*}
  mode=${run#*:}
  load0=$(cut -d' ' -f1 /proc/loadavg)
  extra=()
  [ "$mode" = step ] && extra=(--step_every_vm)
  /usr/bin/time -v -o "$tmp/time" "$bin" --vms="$vms" --nodes=4000 --duration="$duration" --step=5s \
    --placement=spread --threads=0 --html= --csv= --progress=never \
    --summary_json="$tmp/s.json" "${extra[@]}" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out" "$tmp/time" >&2; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
    n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$tmp/time")
  cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {print u + s}' "$tmp/time")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$tmp/time")
  steps=$(sed -n 's/.*"vm_steps": \([0-9]*\).*/\1/p' "$tmp/s.json" | head -1)
  awk -v v="$vms" -v m="$mode" -v w="$wall" -v c="$cpu" -v r="$rss" -v s="$steps" \
    -v l="$load0, $(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "%-8s %-5s %9.1f %9.1f %10s %12.3g  %s\n", v, m, w, c, r, s / w, l }'
done
