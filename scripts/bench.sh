#!/bin/bash
# The benchmarks (issue: what the hooks cost on every start and stop), as
# root on Debian 12: installs what they need, then writes
# docs/benchmarks.md and docs/benchmarks-startstop.png. Extra arguments go to
# the benchmark command (e.g. -rounds 40 -density 64).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
extra=()
command -v gnuplot >/dev/null || extra+=(gnuplot-nox)
[ -x /usr/bin/time ] || extra+=(time)
command -v debootstrap >/dev/null || extra+=(debootstrap) # -only formats builds a Debian root
if [ ${#extra[@]} -gt 0 ]; then
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${extra[@]}"
fi
# Many containers at once need more inotify instances and open files than
# Debian's defaults allow LXC.
sysctl -q -w fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576 || true
ulimit -n 1048576 || true
"$GO" run ./bench -repo "$(pwd)" "$@"
