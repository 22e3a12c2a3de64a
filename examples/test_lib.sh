# Shared by the example binaries' shell tests; sourced after `set -euo pipefail`:
#   source "$TEST_SRCDIR/autoscale/examples/test_lib.sh" NAME
# Makes $tmp, a short temporary directory (unix socket paths live under it) named after NAME,
# removed on exit together with the process in $pid (killed).
tmp=$(mktemp -d "/tmp/${1:-autoscale-test}.XXXXXX")
pid=
test_lib_cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap test_lib_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # text pattern
  grep -q -- "$2" <<<"$1" || fail "expected $2 in: $1"
}

# start_scheduler FLAG...: $scheduler (plaintext) on unix:$tmp/s.sock with its data in $tmp/data,
# in the background as $pid; returns once it serves. Its stderr is appended to $tmp/log.
start_scheduler() {
  rm -f "$tmp/ready"
  "$scheduler" --data_dir="$tmp/data" --listen="unix:$tmp/s.sock" --insecure \
    --ready_file="$tmp/ready" "$@" 2>>"$tmp/log" &
  pid=$!
  for _ in $(seq 100); do [ -f "$tmp/ready" ] && return 0; sleep 0.1; done
  cat "$tmp/log"
  fail "the scheduler did not start"
}
# ctl ARG...: $schedctl against that scheduler.
ctl() { "$schedctl" --server="unix:$tmp/s.sock" --insecure "$@"; }
