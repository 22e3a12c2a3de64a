#!/bin/bash
# Every daemon tells systemd it is ready (the scheduler is checked) and answers /healthz, /readyz and /metrics (with the process and build-info metrics)
# on its HTTP port, and the standard gRPC health check on its gRPC server: the scheduler, an
# agent of a node with no VMs, and a monitor watching its own memory cgroup.
# Arguments: scheduler, agent, monitor, grpc_health_check, the VERSION file.
set -u
scheduler=$1 agent=$2 monitor=$3 health=$4 version=$(cat "$5")
tmp=$(mktemp -d /tmp/daemons-health.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Waits up to 20 s for a file to exist (or a log line to appear); fails the test if it does not.
await() {  # file, pattern (optional)
  for _ in $(seq 200); do
    if [ -z "${2:-}" ]; then [ -s "$1" ] && return 0; else grep -q "$2" "$1" 2>/dev/null && return 0; fi
    sleep 0.1
  done
  echo "FAIL: timed out waiting for ${2:-$1}"; cat "$tmp"/*.log; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

check_http() {  # daemon, port
  local name=$1 port=$2 body code
  for path in healthz readyz; do
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$port/$path")
    [ "$code" = 200 ] || fail "$name /$path: HTTP $code: $(cat "$tmp/body")"
  done
  body=$(curl -s "http://127.0.0.1:$port/metrics")
  grep -q "^autoscale_build_info{version=\"$version\"} 1$" <<<"$body" ||
    fail "$name /metrics: no autoscale_build_info for $version"
  grep -q '^process_resident_memory_bytes [1-9]' <<<"$body" ||
    fail "$name /metrics: no process_resident_memory_bytes"
  grep -q "^# TYPE $3 " <<<"$body" || fail "$name /metrics: no $3"
}
check_grpc() {  # daemon, address
  local out
  out=$("$health" "$2" 2>&1) || fail "$1 gRPC health check at $2: $out"
  [ "$out" = "$2: SERVING" ] || fail "$1 gRPC health: $out"
}

# Started as by a Type=notify unit: READY=1 arrives on $NOTIFY_SOCKET once it serves.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
open(sys.argv[2], "w").write(s.recv(100).decode())' "$tmp/notify.sock" "$tmp/notify.got" &
pids+=($!)
for _ in $(seq 100); do [ -S "$tmp/notify.sock" ] && break; sleep 0.05; done
NOTIFY_SOCKET=$tmp/notify.sock "$scheduler" --data_dir="$tmp/data" --listen=127.0.0.1:0 --metrics_port=0 --insecure \
  --ready_file="$tmp/scheduler.ready" >"$tmp/scheduler.log" 2>&1 &
pids+=($!)
await "$tmp/scheduler.ready"
sched_grpc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc"])' "$tmp/scheduler.ready")
sched_http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metricsPort"])' "$tmp/scheduler.ready")
await "$tmp/notify.got"
[ "$(cat "$tmp/notify.got")" = READY=1 ] || fail "scheduler sd_notify: '$(cat "$tmp/notify.got")'"
check_http scheduler "$sched_http" autoscaling_scheduler_requests_total
check_grpc scheduler "$sched_grpc"

agent_listen=127.0.0.1:$(free_port)
cat >"$tmp/agent.json" <<JSON
{"node": "n1", "schedulerAddress": "$sched_grpc",
 "nodeTotal": {"milliCpu": "4000", "memoryBytes": "4294967296"},
 "computeUnit": {"milliCpu": "250", "memoryBytes": "1073741824"}, "vms": []}
JSON
# An agent listening on every interface must be told the address its peers dial.
"$agent" --config="$tmp/agent.json" --listen=0.0.0.0:0 --http_port=-1 --insecure >"$tmp/wildcard.out" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "agent --listen=0.0.0.0 without --advertise_address: exit $rc, want 2"
grep -q "peers cannot dial an unspecified address" "$tmp/wildcard.out" ||
  fail "agent --listen=0.0.0.0: $(cat "$tmp/wildcard.out")"
# Its migration targets listen where the source's QEMU can dial: one address, not a wildcard.
"$agent" --config="$tmp/agent.json" --listen="$agent_listen" --migration_address=0.0.0.0 \
  --http_port=-1 --insecure >"$tmp/wildcard.out" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "agent --migration_address=0.0.0.0: exit $rc, want 2"
grep -q "not one address of this node" "$tmp/wildcard.out" ||
  fail "agent --migration_address=0.0.0.0: $(cat "$tmp/wildcard.out")"
"$agent" --config="$tmp/agent.json" --listen="$agent_listen" --http_port=0 --insecure \
  --ready_file="$tmp/agent.ready" >"$tmp/agent.log" 2>&1 &
pids+=($!)
await "$tmp/agent.ready"
# By default on the host of the address its peers dial, over TCP.
grep -q "take their streams on tcp:127.0.0.1" "$tmp/agent.log" ||
  fail "agent's migration streams: $(cat "$tmp/agent.log")"
agent_http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["httpPort"])' "$tmp/agent.ready")
check_http agent "$agent_http" autoscaling_agent_migrations_total
check_grpc agent "$agent_listen"

monitor_listen=127.0.0.1:$(free_port)
"$monitor" --listen="$monitor_listen" --http_port=0 --insecure --memory_bytes=1073741824 --watch=none \
  >"$tmp/monitor.log" 2>&1 &
pids+=($!)
await "$tmp/monitor.log" "monitor: http://127.0.0.1:"
monitor_http=$(sed -n 's|.*monitor: http://127.0.0.1:\([0-9]*\) serves.*|\1|p' "$tmp/monitor.log")
check_http monitor "$monitor_http" autoscaling_monitor_threshold_bytes
check_grpc monitor "$monitor_listen"

[ $failures -eq 0 ] || { cat "$tmp"/*.log; exit 1; }
echo PASS
