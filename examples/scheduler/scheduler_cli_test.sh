#!/usr/bin/env bash
# The daemon and schedctl as an operator uses them: start the scheduler on a unix socket (short
# temporary directory), drive every command, read the metrics page, stop it with SIGTERM, start
# it again on the same data directory and find the same ledger.
set -euo pipefail
scheduler=$(realpath "$1")
schedctl=$(realpath "$2")
# shellcheck source=examples/test_lib.sh
source "$TEST_SRCDIR/autoscale/examples/test_lib.sh" schedcli
start() { start_scheduler --metrics_port=0 --metrics_host=127.0.0.1 --recovery_grace="${1:-1s}"; }
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "the scheduler exited with $? on SIGTERM"
  pid=
}

# Bad store flags: exit code 2 and a message naming the flag, before anything is opened or
# contacted (no etcd needed).
bad_flags() {  # pattern flags...
  local want=$1 rc=0
  shift
  "$scheduler" --listen="unix:$tmp/bad.sock" --metrics_port=-1 "${INSECURE---insecure}" "$@" \
    2>"$tmp/err" || rc=$?
  [ "$rc" = 2 ] || fail "scheduler $* exited with $rc, not 2: $(cat "$tmp/err")"
  expect "$(cat "$tmp/err")" "$want"
}
bad_flags '--store (file:DIR or etcd:ENDPOINTS) or --data_dir is required'
bad_flags '--store must be file:DIR or etcd:' --store=zk:127.0.0.1:2181
bad_flags '--store: etcd endpoints' --store=etcd:
bad_flags '--etcd_prefix must start with /' --store=etcd:127.0.0.1:1 --etcd_prefix=autoscale
bad_flags '--lease_ttl must be whole seconds' --store=etcd:127.0.0.1:1 --lease_ttl=1500ms
bad_flags '--etcd_timeout must be > 0' --store=etcd:127.0.0.1:1 --etcd_timeout=0s
bad_flags 'give both --etcd_cert and --etcd_key' --store=etcd:127.0.0.1:1 --etcd_cert=c.pem
bad_flags 'need --etcd_ca' --store=etcd:127.0.0.1:1 --etcd_cert=c.pem --etcd_key=k.pem
bad_flags 'give --advertise' --store=etcd:127.0.0.1:1 --listen=0.0.0.0:10299
bad_flags '--disk_reserve must be >= 0' --store="file:$tmp/bad" --disk_reserve=-1
# Plaintext must be asked for; TLS needs its three files.
INSECURE=--v=0 bad_flags 'or --insecure for plaintext' --store="file:$tmp/bad"
INSECURE=--v=0 bad_flags 'needs all of --tls_cert, --tls_key and --tls_ca' --store="file:$tmp/bad" \
  --tls_cert="$tmp/c.pem"
bad_flags 'exclude each other' --store="file:$tmp/bad" --tls_cert="$tmp/c.pem"
INSECURE=--v=0 bad_flags 'cannot read the certificate file' --store="file:$tmp/bad" \
  --tls_cert="$tmp/none.pem" --tls_key="$tmp/none.key" --tls_ca="$tmp/ca.pem"

start
expect "$(ctl register --node=n1 --total=4000m/16GiB --agent_address=n1:7000)" '"node":"n1"'
expect "$(ctl register --node=n2 --total=4000m/16GiB --watermark=0.5)" '"watermarkFraction":0.5'
expect "$(ctl place --vm=vm1 --min_cu=1 --max_cu=8 --initial=500m/2GiB --node=n1)" '"node":"n1"'
out=$(ctl request --node=n1 --vm=vm1 --compute_unit=250m/1GiB --resources=1000m/4GiB)
expect "$out" '"permit":{"milliCpu":"1000","memoryBytes":"4294967296"}'
expect "$(ctl nodes)" '"reserved":{"milliCpu":"1000","memoryBytes":"4294967296"}'
expect "$(ctl vms --node=n1)" '"vm":"vm1"'
expect "$(ctl permits)" '"permits":\[{"vm":"vm1","node":"n1","permit":{"milliCpu":"1000"'
expect "$(ctl orders --node=n1)" '"protocolVersion":"PROTOCOL_VERSION_1"'
expect "$(ctl status)" '"recordsAppended"'

# Impossible requests: a clear error on stderr, exit code 1, nothing changes.
if ctl request --node=n1 --vm=vm1 --compute_unit=250m/1GiB --resources=9000m/4GiB 2>"$tmp/err"; then
  fail "a request above the bounds was accepted"
fi
expect "$(cat "$tmp/err")" 'INVALID_ARGUMENT: .*above the VM'"'"'s bounds'
if ctl request --node=n1 --vm=ghost --compute_unit=250m/1GiB --resources=250m/1GiB 2>"$tmp/err"; then
  fail "a request for an unknown VM was accepted"
fi
expect "$(cat "$tmp/err")" 'NOT_FOUND'
set +e
ctl request --node=n1 2>/dev/null; rc=$?
set -e
[ "$rc" = 2 ] || fail "a usage error exited with $rc, not 2"

port=$(sed -n 's/.*"metricsPort": \([0-9]*\).*/\1/p' "$tmp/ready")
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
metrics=$(cat <&3)
exec 3<&-
expect "$metrics" 'autoscaling_plugin_node_cpu_resources_current{node="n1",field="Reserved"} 1'
expect "$metrics" 'autoscaling_scheduler_requests_total{method="Request",code="INVALID_ARGUMENT"} 1'

stop
# A grace long enough that the node still awaits its agent when asked (ASan and a busy machine
# make each schedctl call slow).
start 120s
expect "$(ctl permits)" '"permit":{"milliCpu":"1000","memoryBytes":"4294967296"}'
expect "$(ctl nodes --node=n1)" '"awaitingAgent":true'
ctl release --vm=vm1 >/dev/null
expect "$(ctl nodes --node=n1)" '"reserved":{},'

# Node lifecycle: cordon, update, bounds, drain, remove; tables.
expect "$(ctl cordon --node=n1)" '"cordoned":true'
expect "$(ctl uncordon --node=n1)" '"node":"n1"'
expect "$(ctl update-node --node=n2 --watermark=0.75)" '"watermarkFraction":0.75'
ctl register --node=n3 --total=2000m/8GiB >/dev/null
ctl place --vm=vm3 --min_cu=1 --max_cu=2 --node=n3 --migratable >/dev/null
expect "$(ctl bounds --vm=vm3 --min_cu=1 --max_cu=4)" '"maxCu":4'
expect "$(ctl -o table nodes)" '^NODE  *STATE  *TOTAL'
expect "$(ctl -o table vms)" 'vm3  *n3  *1..4 CU'
drain=$(ctl drain --node=n3)
expect "$drain" '"draining":true'
expect "$drain" '"migrating":\[{"id":"[0-9]*","vm":"vm3"'
order=$(sed -n 's/.*"migrating":\[{"id":"\([0-9]*\)".*/\1/p' <<<"$drain")
if ctl remove --node=n3 2>"$tmp/err"; then fail "a node holding a VM was removed"; fi
expect "$(cat "$tmp/err")" 'FAILED_PRECONDITION: .*still holds 1 VMs (vm3)'
expect "$(ctl -o table orders --node=n3)" "^$order  *vm3  *n3"
ctl report --order="$order" --vm=vm3 >/dev/null
expect "$(ctl -o table drain --node=n3)" 'done: no VM left'
expect "$(ctl remove --node=n3)" '"protocolVersion":"PROTOCOL_VERSION_1"'
if ctl nodes --node=n3 | grep -q '"node":"n3"'; then fail "n3 is still listed"; fi
stop
echo "scheduler_cli_test: 1 passed, 0 failed"
