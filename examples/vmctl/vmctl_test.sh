#!/usr/bin/env bash
# vmctl with real QEMU (no guest OS): check accepts a spec and names the bad field of a broken
# one; start runs the VM with its data disk; inspect reads its state, vCPUs, memory and disk
# through QMP; stop quits it, start exits 0, and QEMU is gone. As root, QEMU runs as its own user
# in a directory of that user's, a missing --qemu_user is named, and stop refuses a pid file that
# QEMU's user could have written.
set -euo pipefail
vmctl=$(realpath "$1")
if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "SKIP: qemu-system-x86_64 is missing"
  exit 0
fi
# shellcheck source=examples/test_lib.sh
source "$TEST_SRCDIR/autoscale/examples/test_lib.sh" vmctl

truncate -s 8M "$tmp/data.img"
cat >"$tmp/vm.json" <<JSON
{"name": "vmctl-test", "accel": "tcg", "cpusMin": 1, "cpusMax": 2, "cpusUse": 1,
 "memorySlotBytes": "268435456", "memorySlotsMin": 1, "memorySlotsMax": 2, "memorySlotsUse": 1,
 "disks": [{"path": "$tmp/data.img", "cache": "writeback"}]}
JSON
expect "$("$vmctl" --spec="$tmp/vm.json" check)" "VM vmctl-test: spec OK"

sed 's/"writeback"/"fast"/' "$tmp/vm.json" >"$tmp/bad.json"
rc=0
out=$("$vmctl" --spec="$tmp/bad.json" check 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "check of a bad spec exited $rc: $out"
expect "$out" "bad.json"
expect "$out" "disks\[0\].cache must be none, writeback"

rc=0
out=$("$vmctl" inspect 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "inspect without --runtime_dir exited $rc: $out"

"$vmctl" --spec="$tmp/vm.json" --runtime_dir="$tmp/run" start >"$tmp/start.out" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -f "$tmp/run/vmctl.pid" ] && break; sleep 0.05; done
[ -f "$tmp/run/vmctl.pid" ] || fail "start did not come up: $(cat "$tmp/start.out")"
expect "$(cat "$tmp/start.out")" "VM vmctl-test: QEMU pid [0-9]*, running"
qemu=$(sed -n 's/.*QEMU pid \([0-9]*\),.*/\1/p' "$tmp/start.out")
kill -0 "$qemu" || fail "QEMU $qemu is not running"
# The VM's agent token: 32 random bytes in hex, readable by its owner only, handed to the guest
# through fw_cfg (never on the kernel command line).
expect "$(cat "$tmp/start.out")" "agent token: $tmp/run/agent-token"
[ "$(stat -c %a "$tmp/run/agent-token")" = 600 ] || fail "agent token mode $(stat -c %a "$tmp/run/agent-token")"
grep -qE '^[0-9a-f]{64}$' "$tmp/run/agent-token" || fail "agent token: $(cat "$tmp/run/agent-token")"
tr '\0' ' ' <"/proc/$qemu/cmdline" | grep -q "name=opt/autoscale/agent-token,file=$tmp/run/agent-token" ||
  fail "QEMU has no fw_cfg agent token: $(tr '\0' ' ' <"/proc/$qemu/cmdline")"

if [ "$(id -u)" = 0 ] && getent passwd autoscale-qemu >/dev/null; then
  expect "$(ps -o user= -p "$qemu")" "autoscale-qemu"
  expect "$(stat -c '%U %a' "$tmp/run")" "autoscale-qemu 700"
else
  echo "not checking QEMU's user: needs root and the user autoscale-qemu (scripts/setup)"
fi

out=$("$vmctl" --runtime_dir="$tmp/run" inspect)
expect "$out" "status: running"
expect "$out" "vcpus: 1"
expect "$out" "memory: 256 MiB base, 0 MiB plugged"
expect "$out" "disk: disk0 $tmp/data.img read-write"

expect "$("$vmctl" --runtime_dir="$tmp/run" stop)" "stopped"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "start exited $rc: $(cat "$tmp/start.out")"
expect "$(cat "$tmp/start.out")" "stopped (Terminated)"
! kill -0 "$qemu" 2>/dev/null || fail "QEMU $qemu outlived stop"
[ ! -e "$tmp/run/vmctl.pid" ] || fail "the pid file is left behind"

rc=0
out=$("$vmctl" --runtime_dir="$tmp/run" stop 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "a second stop exited $rc"
expect "$out" "no vmctl start runs this directory"

if [ "$(id -u)" = 0 ]; then
  rc=0
  out=$("$vmctl" --spec="$tmp/vm.json" --runtime_dir="$tmp/nouser" --qemu_user=autoscale-no-such-user \
    start 2>&1) || rc=$?
  [ "$rc" = 1 ] || fail "start with a missing user exited $rc: $out"
  expect "$out" 'user "autoscale-no-such-user"'
  expect "$out" "scripts/setup"
  sleep 30 &
  victim=$!
  mkdir -p "$tmp/forged"
  echo "$victim" >"$tmp/forged/vmctl.pid"
  chown nobody "$tmp/forged/vmctl.pid"
  rc=0
  out=$("$vmctl" --runtime_dir="$tmp/forged" stop 2>&1) || rc=$?
  [ "$rc" = 1 ] || fail "stop with another user's pid file exited $rc: $out"
  expect "$out" "not written by vmctl start"
  kill -0 "$victim" || fail "stop signalled the process a forged pid file named"
  # ... nor a link to a pid file of this user's (root's) that names another process.
  echo "$victim" >"$tmp/root.pid"
  rm "$tmp/forged/vmctl.pid"
  ln -s "$tmp/root.pid" "$tmp/forged/vmctl.pid"
  rc=0
  out=$("$vmctl" --runtime_dir="$tmp/forged" stop 2>&1) || rc=$?
  [ "$rc" = 1 ] || fail "stop through a linked pid file exited $rc: $out"
  kill -0 "$victim" || fail "stop signalled the process a linked pid file named"
  kill "$victim"
fi
echo PASS
