#!/bin/bash
# Coverage of the unit tests and the real-LXC tests together, per package.
# The real tests run the hooks as LXC runs them, in other processes, so
# `go test -cover` alone sees none of it: the test harness builds the hooks
# with `go build -cover` when LXC_HOOKS_COVERDIR is set, and every hook run
# (lxc-start hands its environment, GOCOVERDIR included, to the hooks) and
# operator command leaves its counters there. Those are merged with the
# unit tests' own counters (-test.gocoverdir) and reported per package.
# Usage: scripts/coverage.sh [go test args, e.g. -run TestX]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
out=${COVER_OUT:-$PWD/out/coverage}
rm -rf "$out"
mkdir -p "$out/unit" "$out/hooks" "$out/merged"
set +e
# Unit tests: counters of the test binaries themselves.
# The tag compiles the kill points in (pkg/killpoint), as in the hooks the
# real tests build (test/harness_test.go), so both count the same code.
"$GO" test -count=1 -p 1 -tags lxchooks_testhooks -cover -coverpkg=./pkg/... ./pkg/... -args -test.gocoverdir="$out/unit" >"$out/unit.log" 2>&1
unit=$?
# Real tests: counters of the hooks they run.
LXC_HOOKS_COVERDIR="$out/hooks" "$GO" test -count=1 -p 1 -timeout 80m ./test/ "$@" >"$out/real.log" 2>&1
real=$?
set -e
[ $unit -eq 0 ] || echo "coverage.sh: unit tests failed (see $out/unit.log); figures below are what ran" >&2
[ $real -eq 0 ] || echo "coverage.sh: real tests failed (see $out/real.log); figures below are what ran" >&2
if [ -z "$(ls -A "$out/hooks")" ]; then
	echo "coverage.sh: the hooks left no counters in $out/hooks (did the real tests run as root?)" >&2
	exit 1
fi
"$GO" tool covdata merge -i="$out/unit,$out/hooks" -o="$out/merged"
"$GO" tool covdata textfmt -i="$out/merged" -o="$out/coverage.out"
echo "unit tests alone:"
"$GO" tool covdata percent -i="$out/unit" | sed 's/^/  /'
echo "real-LXC tests alone (the hooks' own counters):"
"$GO" tool covdata percent -i="$out/hooks" | sed 's/^/  /'
echo "unit and real tests together:"
"$GO" tool covdata percent -i="$out/merged" | sed 's/^/  /'
echo "per function: $GO tool cover -func=$out/coverage.out; as HTML: $GO tool cover -html=$out/coverage.out"
