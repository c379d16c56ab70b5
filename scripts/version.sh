#!/bin/bash
# Prints the version and the commit of this tree, one per line, from git:
#   HEAD tagged v0.2.0                 -> 0.2.0
#   5 commits after the tag v0.2.0     -> 0.2.0+git5.1a2b3c4
#   no v* tag in the history           -> 0.0.0+gitN.1a2b3c4 (N: all commits),
#                                         below any tagged release for dpkg
# A tag's pre-release suffix (v0.2.0-rc1) becomes ~rc1, which dpkg sorts
# before 0.2.0. Uncommitted changes mark the commit "-dirty", not the
# version. VERSION and COMMIT in the environment override both (a build
# from a tarball without .git); with neither git nor those: 0.0.0, unknown.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VERSION:-}" ]; then
	echo "$VERSION"
	echo "${COMMIT:-unknown}"
	exit 0
fi
# Only this repository's own history: a source tree unpacked inside some
# other git checkout must not take that one's tags.
top=$(git rev-parse --show-toplevel 2>/dev/null || true)
if [ -z "$top" ] || [ "$(cd "$top" && pwd -P)" != "$(pwd -P)" ] || ! git rev-parse -q --verify HEAD >/dev/null; then
	echo "version.sh: not a git checkout; set VERSION (and COMMIT) for a build from a tarball" >&2
	echo 0.0.0+unknown
	echo "${COMMIT:-unknown}"
	exit 0
fi

commit=$(git rev-parse HEAD)
short=$(git rev-parse --short=7 HEAD)
git update-index -q --refresh >/dev/null 2>&1 || true
git diff-index --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"

if desc=$(git describe --tags --long --abbrev=7 --match 'v[0-9]*.[0-9]*.[0-9]*' HEAD 2>/dev/null); then
	# v0.2.0-5-g1a2b3c4 (the tag itself may contain dashes: v0.2.0-rc1-5-g...)
	rest=${desc%-g*}
	count=${rest##*-}
	tag=${rest%-*}
	base=${tag#v}
	base=${base//-/\~}
else
	base=0.0.0
	count=$(git rev-list --count HEAD)
	if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
		echo "version.sh: shallow clone without a v* tag in reach: version counts only the $count commits present; 'git fetch --unshallow --tags' gives the real one" >&2
	fi
fi

case $base in
[0-9]*) ;;
*) echo "version.sh: tag $tag does not give a Debian version (v0.x.y expected)" >&2; exit 1 ;;
esac
if [ "$count" = 0 ]; then
	echo "$base"
else
	echo "$base+git$count.$short"
fi
echo "$commit"
