#!/bin/bash
# Builds the three static hook binaries into bin/ (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GO:=go}"
out=${1:-bin}
mkdir -p "$out"
# The version and commit from git tags (scripts/version.sh), or VERSION and
# COMMIT from the environment.
{ read -r version; read -r commit; } < <(./scripts/version.sh)
for cmd in cmd/*/; do
	ls "$cmd"*.go >/dev/null 2>&1 || continue
	name=$(basename "$cmd")
	strip="-s -w"
	[ "${STRIP:-1}" = 0 ] && strip=""
	CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$strip -X github.com/lxc-hooks/lxc-hooks/pkg/runner.Version=$version -X github.com/lxc-hooks/lxc-hooks/pkg/runner.Commit=$commit" -o "$out/$name" "./$cmd"
	# A release binary never has the test-only kill points (pkg/killpoint):
	# lxc-start hands its environment to the hooks, and a variable there
	# must not be able to kill one. Only the tests' builds set the tag; one
	# that slipped in (GOFLAGS=-tags=...) fails the build here.
	if "$GO" version -m "$out/$name" | grep -q 'lxchooks_testhooks'; then
		rm -f "$out/$name"
		echo "build.sh: $name was built with the test-only tag lxchooks_testhooks (GOFLAGS=${GOFLAGS:-}?); release builds must not have it" >&2
		exit 1
	fi
	# The brief's limits: static (no interpreter to load) and at most
	# 4 MiB stripped. A build that grew past them fails here, not in the
	# field.
	if [ -n "$strip" ]; then
		size=$(stat -c %s "$out/$name")
		if [ "$size" -gt $((4 << 20)) ]; then
			echo "build.sh: $name is $size bytes stripped, over the 4 MiB (4194304) limit" >&2
			exit 1
		fi
	fi
	if "$GO" version -m "$out/$name" | grep -q 'CGO_ENABLED=1'; then
		echo "build.sh: $name was built with cgo; the hooks must be static" >&2
		exit 1
	fi
done
