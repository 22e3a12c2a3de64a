#!/usr/bin/env python3
"""Counts the test cases of one `bazel test` run from its build event file (--build_event_json_file)
and the test.xml each test wrote. Prints one line: "<label>: P passed, F failed, S skipped" and
exits 0; the caller adds up the lines. A test target that failed without a failing case in its
XML (crash, timeout, build error) counts as one failed case."""
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def cases(xml_path):
    passed = failed = skipped = 0
    names = []
    skips = []
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    for tc in root.iter("testcase"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            failed += 1
            names.append(tc.get("classname", "") + "." + tc.get("name", ""))
        elif tc.find("skipped") is not None or tc.get("result") == "skipped" or tc.get("status") == "notrun":
            skipped += 1
            why = tc.find("skipped")
            msg = (why.get("message") or "") if why is not None else ""
            skips.append("%s.%s: %s" % (tc.get("classname", ""), tc.get("name", ""), msg.strip().splitlines()[-1] if msg.strip() else "skipped"))
        else:
            passed += 1
    return passed, failed, skipped, names, skips


def main(bep_path, tag):
    results = {}  # label -> (status, xml path)
    broken = []  # test targets that did not build
    tests = set()
    with open(bep_path) as f:
        for line in f:
            ev = json.loads(line)
            eid = ev.get("id", {})
            if "testResult" in eid:
                label = eid["testResult"]["label"]
                status = ev.get("testResult", {}).get("status", "NO_STATUS")
                xml = None
                for out in ev.get("testResult", {}).get("testActionOutput", []):
                    if out.get("name") == "test.xml":
                        xml = urllib.parse.unquote(urllib.parse.urlparse(out["uri"]).path)
                results[label] = (status, xml)
            elif "targetConfigured" in eid:
                if "testSize" in ev.get("configured", {}):
                    tests.add(eid["targetConfigured"]["label"])
            elif "targetCompleted" in eid:
                if "aborted" in ev or not ev.get("completed", {}).get("success", False):
                    broken.append(eid["targetCompleted"]["label"])
    P = F = S = 0
    failures = []
    for label, (status, xml) in sorted(results.items()):
        counted = cases(xml) if xml else None
        p, f, s, names, skips = counted if counted else (0, 0, 0, [], [])
        for skip in skips:
            print("SKIPPED [%s]: %s %s" % (tag, label, skip))
        if status != "PASSED" and f == 0:
            f = 1
            names = ["(%s)" % status]
        if status == "PASSED" and p == 0 and f == 0:
            p = 1  # a test binary without cases (sh_test) that passed
        P, F, S = P + p, F + f, S + s
        if f:
            failures.append("%s %s" % (label, " ".join(names[:5])))
    for label in sorted((set(broken) & tests) - set(results)):
        F += 1
        failures.append("%s (did not build)" % label)
    for line in failures:
        print("FAILED [%s]: %s" % (tag, line))
    print("%s: %d passed, %d failed, %d skipped" % (tag, P, F, S))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "tests")
