#!/usr/bin/env bash
# A damaged log end to end, with the real binaries: a scheduler killed after acknowledging its
# changes; a byte flipped in the middle of its last log file; the next start refuses, naming the
# file, the offset and the records; `ledgerctl verify` reports the damage; `ledgerctl truncate`
# cuts there; the scheduler then starts and reports what was dropped (schedctl status).
set -euo pipefail
scheduler=$(realpath "$1")
schedctl=$(realpath "$2")
ledgerctl=$(realpath "$3")
# shellcheck source=examples/test_lib.sh
source "$TEST_SRCDIR/autoscale/examples/test_lib.sh" ledgerctl
start() { start_scheduler --metrics_port=-1 --recovery_grace=1s --snapshot_every=1000000; }

start
ctl register --node=n1 --total=16000m/64GiB >/dev/null
ctl register --node=n2 --total=16000m/64GiB >/dev/null
for vm in a b c; do ctl place --vm=$vm --min_cu=1 --max_cu=16 --node=n1 >/dev/null; done
for cu in 2 3 4 5 6 7 8 9 10 11 12; do
  ctl request --node=n1 --vm=a --compute_unit=250m/1GiB --resources=$((cu * 250))m/${cu}GiB >/dev/null
done
# The directory belongs to the running scheduler.
if "$ledgerctl" --data_dir="$tmp/data" verify >"$tmp/out" 2>&1; then fail "verify ran on a directory in use"; fi
expect "$(cat "$tmp/out")" "in use by a running scheduler"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=

log=$(ls "$tmp"/data/log-*.wal | tail -1)
size=$(stat -c %s "$log")
offset=$((size / 2))
byte=$(od -An -tu1 -j "$offset" -N1 "$log" | tr -d ' ')
printf "$(printf '\\%03o' $(((byte + 1) % 256)))" | dd of="$log" bs=1 seek="$offset" conv=notrunc status=none

# The start refuses, naming the damage and what to do.
set +e
timeout 30 "$scheduler" --data_dir="$tmp/data" --listen="unix:$tmp/s.sock" --metrics_port=-1 --insecure \
  2>"$tmp/refused"
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$tmp/refused"; fail "a damaged log started the scheduler (exit $rc)"; }
refused=$(cat "$tmp/refused")
expect "$refused" "DATA_LOSS: ledger log $log at offset [0-9]*, where record [0-9]* should be"
expect "$refused" "a valid record [0-9]* follows at offset"
expect "$refused" "not a torn tail"
at=$(sed -n 's/.*truncate --data_dir=[^ ]* --at=\([0-9]*\).*/\1/p' <<<"$refused" | head -1)
[ -n "$at" ] || fail "no --at=SEQ suggested in: $refused"

set +e
"$ledgerctl" --data_dir="$tmp/data" verify >"$tmp/verify"
rc=$?
set -e
[ "$rc" = 1 ] || fail "verify of a damaged log exited $rc"
verify=$(cat "$tmp/verify")
expect "$verify" "PROBLEM: $log at offset [0-9]*, where record $at should be"
expect "$verify" "DAMAGED"
# The dump shows the damage between the records.
expect "$("$ledgerctl" --data_dir="$tmp/data" dump)" '"damage":'

cut=$("$ledgerctl" --data_dir="$tmp/data" truncate --at="$at")
expect "$cut" "records from $at on dropped"
expect "$("$ledgerctl" --data_dir="$tmp/data" verify)" "^OK"

start
status=$(ctl status)
expect "$status" "\"truncationReason\":\"cut by \`ledgerctl truncate --at=$at\`"
expect "$status" "\"truncatedFile\":\"$log\""
expect "$(ctl nodes)" '"node":"n2"'
kill -TERM "$pid"
wait "$pid" || fail "the scheduler exited with $? on SIGTERM"
pid=
echo "ledgerctl_test: damage refused, verified, cut at record $at and reported"
