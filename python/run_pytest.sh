#!/usr/bin/env bash
# Runs the pytest suite of //python:pytest against the module built next to it. Debian's
# interpreter: it is the one python3-numpy, python3-pytest and python3-matplotlib install into
# (another python3 may come first on PATH, for example pyenv's).
set -euo pipefail
PY=/usr/bin/python3
for mod in pytest numpy matplotlib; do
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    echo "FAILED: $PY cannot import $mod: run scripts/setup (python3-$mod)" >&2
    exit 1
  fi
done
here="${TEST_SRCDIR}/${TEST_WORKSPACE}/python"
export PYTHONPATH="$here"
export MPLBACKEND=Agg
export MPLCONFIGDIR="${TEST_TMPDIR}/matplotlib"
export README="${TEST_SRCDIR}/${TEST_WORKSPACE}/README.md"
cd "${TEST_TMPDIR}"
# Bazel reads the cases from XML_OUTPUT_FILE (JUnit XML), and so does scripts/count_tests.py.
exec "$PY" -m pytest -p no:cacheprovider -q --junitxml="${XML_OUTPUT_FILE:-${TEST_TMPDIR}/pytest.xml}" \
  "$here/autoscale_test.py" "$here/simulation_test.py" "$here/readme_test.py"
