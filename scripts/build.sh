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
done
