#!/bin/sh
# InitProgram's logging flags: --v and GLOG_v, --log_format=json (each line one JSON object with
# the severity as its level, a crash report too), a bad --log_format refused.
set -u
helper=$1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

out=$("$helper" --log_format=json --v=2 2>&1 >/dev/null)
lines=$(printf '%s\n' "$out" | wc -l)
[ "$lines" -eq 4 ] || fail "json: want 4 lines, got $lines: $out"
printf '%s\n' "$out" | python3 -c '
import json, sys
want = [("info", "plain info"), ("warning", "a \"quoted\" word,\ta tab and a back\\slash"),
        ("error", "an error from caf\u00e9 with a stray \u00ff byte"), ("info", "verbose two")]
got = [json.loads(line) for line in sys.stdin.buffer.read().decode("utf-8").splitlines()]
assert [(g["level"], g["msg"]) for g in got] == want, got
for g in got:
    assert g["caller"].startswith("init_test_helper.cc:"), g
    assert g["ts"].endswith("Z") and "T" in g["ts"], g
' || fail "json: lines are not the expected objects: $out"

# A failed CHECK: its message, the signal and the stack trace, every line JSON.
out=$("$helper" --log_format=json crash 2>&1 >/dev/null)
rc=$?
[ $rc -ne 0 ] || fail "json crash: exit code 0"
printf '%s\n' "$out" | python3 -c '
import json, sys
got = [json.loads(line) for line in sys.stdin.buffer.read().decode("utf-8").splitlines()]
assert got[0]["level"] == "fatal" and "asked to \"crash\"" in got[0]["msg"], got[0]
assert any("SIGABRT" in g["msg"] for g in got), got
assert len(got) > 3 and all(g["level"] == "fatal" for g in got), got
' || fail "json crash: not every line a JSON object with the check and the signal: $out"

out=$("$helper" 2>&1 >/dev/null)
case $out in *"verbose two"*) fail "text: VLOG(2) written at verbosity 0" ;; esac
case $out in *"plain info"*) ;; *) fail "text: no INFO line: $out" ;; esac

out=$(GLOG_v=2 "$helper" 2>&1 >/dev/null)
case $out in *"verbose two"*) ;; *) fail "GLOG_v=2 in the environment was overridden: $out" ;; esac
out=$(GLOG_v=2 "$helper" --v=0 2>&1 >/dev/null)
case $out in *"verbose two"*) fail "--v=0 did not override GLOG_v=2" ;; esac

out=$("$helper" --log_format=xml 2>&1)
rc=$?
[ $rc -eq 2 ] || fail "--log_format=xml: want exit 2, got $rc"
case $out in *"--log_format must be text or json"*) ;; *) fail "--log_format=xml: $out" ;; esac

[ $failures -eq 0 ] && echo "PASS" || exit 1
