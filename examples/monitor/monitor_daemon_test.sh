#!/bin/bash
# The monitor daemon: clear errors for bad flags, and a clean start and stop on a real cgroup.
set -u
bin=$1
tmp=$(mktemp -d /tmp/monitor-test.XXXXXX)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
pid=
fail() { echo "FAIL: $*"; [ -f "$tmp/log" ] && cat "$tmp/log"; exit 1; }
# Waits (up to 10 s) for the daemon $pid to log that it listens; fails if it exits first.
await_listening() {  # what, for the failure message
  for _ in $(seq 100); do
    grep -q "listening on" "$tmp/log" && return 0
    kill -0 $pid 2>/dev/null || fail "the daemon exited$1"
    sleep 0.1
  done
}

"$bin" --insecure --watch=sideways --memory_bytes=1073741824 >"$tmp/log" 2>&1 && fail "bad --watch accepted"
grep -q "unknown watch mode 'sideways'" "$tmp/log" || fail "bad --watch message"

"$bin" --insecure --cgroup=/sys/fs/cgroup/memory/no-such-group --memory_bytes=1073741824 >"$tmp/log" 2>&1 &&
  fail "missing cgroup accepted"
grep -q "no-such-group" "$tmp/log" || fail "missing cgroup message does not name it"

"$bin" --insecure --lfc_resizer=magic --memory_bytes=1073741824 >"$tmp/log" 2>&1 && fail "bad resizer accepted"
grep -q "lfc_resizer must be none, postgres or file:PATH" "$tmp/log" || fail "bad resizer message"

# An agent token file named but not there: an error naming it (only the fw_cfg default may be
# absent, in a VM launched without a token).
"$bin" --insecure --agent_token_file="$tmp/no-token" --listen="unix:$tmp/t.sock" --http_port=-1 \
  --memory_bytes=1073741824 >"$tmp/log" 2>&1 && fail "missing agent token file accepted"
grep -q "agent token $tmp/no-token" "$tmp/log" || fail "missing agent token message does not name it"

# Its own memory cgroup (v1 here), sampling and the v1 watcher, on a unix socket.
"$bin" --insecure --listen="unix:$tmp/monitor.sock" --http_port=0 --memory_bytes=1073741824 \
  --lfc_resizer="file:$tmp/lfc" >"$tmp/log" 2>&1 &
pid=$!
await_listening ""
grep -q "listening on unix:" "$tmp/log" || fail "no 'listening' line"
# No fw_cfg token on this host: the link works unbound, and says so.
grep -q "no agent token: the link is not bound" "$tmp/log" || fail "no warning about the unbound link"
grep -q "watching cgroup v1 usage threshold" "$tmp/log" || echo "note: not on cgroup v1: $(grep watching "$tmp/log")"
[ -S "$tmp/monitor.sock" ] || fail "no socket"
# The LFC is sized for 1 GiB at start: min(0.75 GiB, (1024 - 640) MiB / 1.1) = 349 MiB.
[ "$(cat "$tmp/lfc")" = $((349 << 20)) ] || fail "LFC size file: $(cat "$tmp/lfc" 2>&1)"
kill -TERM $pid
for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "still running 5s after SIGTERM"
wait $pid || fail "exit status $? after SIGTERM"
grep -q "shutting down" "$tmp/log" || fail "no shutdown line"

# A cgroup v2 group (a directory with its files: this machine's cgroup2 has no memory controller)
# whose memory.high monitor 0.1.0 set to its threshold and left behind: the daemon puts the
# operator's value (--memory_high, default max) back at start, and with "keep" leaves it.
v2=$tmp/v2
mkdir -p "$v2"
printf 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n' >"$v2/memory.events"
echo 100000000 >"$v2/memory.current"
printf 'anon 90000000\nfile 10000000\nshmem 0\n' >"$v2/memory.stat"
for setting in keep max; do
  echo 943718400 >"$v2/memory.high"
  "$bin" --insecure --listen="unix:$tmp/v2-$setting.sock" --http_port=-1 --cgroup="$v2" --watch=v2 \
    --memory_high=$setting --memory_bytes=1073741824 >"$tmp/log" 2>&1 &
  pid=$!
  await_listening " on the v2 group ($setting)"
  kill -TERM $pid
  wait $pid || fail "exit status $? on the v2 group ($setting)"
  want=943718400
  [ $setting = max ] && want=max
  [ "$(cat "$v2/memory.high")" = $want ] || fail "memory.high with --memory_high=$setting: $(cat "$v2/memory.high")"
done
grep -q "memory.high of $v2 was 943718400" "$tmp/log" || fail "the repair is not logged"
"$bin" --insecure --cgroup="$v2" --memory_high=lots --memory_bytes=1073741824 >"$tmp/log" 2>&1 &&
  fail "bad --memory_high accepted"
grep -q "memory.high setting must be max, keep or a size" "$tmp/log" || fail "bad --memory_high message"

# SIGTERM and SIGINT are blocked in every thread, from main on, and taken by sigwait (no handler
# runs on some thread in the middle of a lock). SIGTERM goes out as soon as a thread's mask shows
# the block (bit 15 of SigBlk; while the main thread waits in sigwait, its own mask does not),
# which is often before the daemon is up: a signal during the start is neither lost nor fatal.
"$bin" --insecure --listen="unix:$tmp/monitor2.sock" --http_port=0 --memory_bytes=1073741824 >"$tmp/log" 2>&1 &
pid=$!
blocked=
for _ in $(seq 500); do
  for mask in $(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/$pid/task/*/status 2>/dev/null); do
    if [ $(( 0x$mask & 0x4000 )) -ne 0 ]; then blocked=1; fi
  done
  [ -n "$blocked" ] && break
  kill -0 $pid 2>/dev/null || fail "the daemon exited"
  sleep 0.01
done
[ -n "$blocked" ] || fail "the daemon never blocked SIGTERM"
kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "still running 10s after SIGTERM during its start"
wait $pid || fail "exit status $? after SIGTERM during its start"
grep -q "signal 15, shutting down" "$tmp/log" || fail "no shutdown line after SIGTERM during its start"
echo PASS
