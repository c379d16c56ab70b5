#!/bin/bash
# The whole test suite on a fresh Debian 12 as root: installs what the tests
# need, then runs the unit tests and the real-LXC tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
"$GO" version
"$GO" vet ./...
"$GO" vet -tags lxchooks_testhooks ./...
# -p 1: one package at a time, so the real-LXC tests' timings are their own.
# -v shows the figures the tests measure.
log=$(mktemp /tmp/lxc-hooks-test.XXXXXX.log)
set +e
"$GO" test -count=1 -p 1 -timeout 80m -v ./... 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The kill points' own tests need the test-only tag (pkg/killpoint); the
# run above tests the release build of that package (no kill points).
"$GO" test -count=1 -v -tags lxchooks_testhooks ./pkg/killpoint/ 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
passed=$(grep -cE -- '^\s*--- PASS' "$log" || true)
failed=$(grep -cE -- '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE -- '^\s*--- SKIP' "$log" || true)
echo "tests: $passed passed, $failed failed, $skipped skipped"
echo "(full log: $log)"
exit "$status"
