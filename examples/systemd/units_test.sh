#!/bin/bash
# The systemd units verify (systemd-analyze verify), with ExecStart pointing at the built binaries.
# Arguments: systemd-analyze's absence is a skip; then scheduler, agent, and the unit files.
set -u
scheduler=$(realpath "$1") agent=$(realpath "$2")
shift 2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (package systemd)"
  exit 0
fi
tmp=$(mktemp -d /tmp/units-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for unit in "$@"; do
  sed -e "s|/usr/local/bin/scheduler|$scheduler|g" -e "s|/usr/local/bin/agent|$agent|g" \
    "$unit" >"$tmp/$(basename "$unit")"
done
grep -q '^Type=notify$' "$tmp"/*.service || { echo "FAIL: a unit is not Type=notify"; exit 1; }
if ! out=$(systemd-analyze verify --man=no "$tmp"/*.service 2>&1); then
  echo "FAIL: systemd-analyze verify:"; echo "$out"; exit 1
fi
# verify exits 0 on some warnings; any line naming our units is a finding.
if grep -q "autoscale-" <<<"$out"; then echo "FAIL: $out"; exit 1; fi
echo "PASS: $(ls "$tmp" | tr '\n' ' ')"
