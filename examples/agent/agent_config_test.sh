#!/usr/bin/env bash
# The agent's --check_config: the example config in the README loads, and broken configs are
# refused with exit code 2 and a message naming the file and the field.
set -euo pipefail
agent=$(realpath "$1")
example=$(realpath "$2")
tmp=$(mktemp -d /tmp/agentcfg.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$agent" --config="$example" --check_config) || fail "the example config was refused"
[ "$out" = "config OK: node node-a, 1 VMs" ] || fail "unexpected output: $out"

# Each broken copy must be refused, naming what is wrong.
check_refused() {  # file, expected text in the error
  set +e
  err=$("$agent" --config="$1" --check_config 2>&1)
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "$1: exit code $rc, want 2 ($err)"
  case "$err" in *"$2"*) ;; *) fail "$1: error does not mention '$2': $err" ;; esac
  case "$err" in *"$1"*) ;; *) fail "error does not name the file $1: $err" ;; esac
}
sed 's/"node": "node-a"/"node": ""/' "$example" >"$tmp/no_node.json"
check_refused "$tmp/no_node.json" "node: required"
sed 's/"maxCu": 8/"maxCu": 0/' "$example" >"$tmp/bounds.json"
check_refused "$tmp/bounds.json" "vms[0].bounds"
sed 's/"memorySlotBytes": "268435456"/"memorySlotBytes": "402653184"/' "$example" >"$tmp/slots.json"
check_refused "$tmp/slots.json" "vms[0].spec"
sed 's/"downtimeLimit": "0.030s"/"downtimeLimit": "-1s"/' "$example" >"$tmp/downtime.json"
check_refused "$tmp/downtime.json" "migration.downtimeLimit"
sed 's/"downtimeLimit": "0.030s"/"downtimeLimit": "0.0001s"/' "$example" >"$tmp/downtime_small.json"
check_refused "$tmp/downtime_small.json" "migration.downtimeLimit"
sed 's/"postcopyAfterPasses": 1/"postcopyAfterPasses": 4000000000/' "$example" >"$tmp/passes.json"
check_refused "$tmp/passes.json" "migration.postcopyAfterPasses"
sed 's/"postcopyAfterPasses": 1/"maxBandwidthBytesPerSecond": "-1"/' "$example" >"$tmp/bandwidth.json"
check_refused "$tmp/bandwidth.json" "migration.maxBandwidthBytesPerSecond"
# Zero takes the default.
sed 's/"downtimeLimit": "0.030s"/"downtimeLimit": "0s"/' "$example" >"$tmp/downtime_zero.json"
"$agent" --config="$tmp/downtime_zero.json" --check_config >/dev/null ||
  fail "a zero downtimeLimit (the default) was refused"
echo '{"node": "a", ' >"$tmp/truncated.json"
check_refused "$tmp/truncated.json" "truncated.json"
check_refused "$tmp/missing.json" "missing.json"
echo "PASS"
