#!/bin/bash
# Prints the version and the commit of this tree, one per line, from git:
#   HEAD tagged v0.2.0                 -> 0.2.0
#   5 commits after the tag v0.2.0     -> 0.2.0+git5.1a2b3c4
#   no v* tag in the history (a clone  -> the newest release in CHANGELOG.md,
#   that fetched none): 7 commits after   "## 0.2.0 - 2026-12-01", plus the
#   the commit that added that heading    commits since: 0.2.0+git7.1a2b3c4
#   neither                            -> 0.0.0+gitN.1a2b3c4 (N: all commits),
#                                         below any release for dpkg
# Releasing is that one commit: CHANGELOG.md's "## Unreleased" renamed to
# "## X.Y.Z - DATE", then tagged vX.Y.Z (README, "Cutting a release"); so
# with or without the tag a build counts from the same commit. A tag older
# than CHANGELOG.md's newest release (a clone that has old tags only)
# yields to the CHANGELOG.
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

# newer A B: whether version A sorts after B (dpkg's order where dpkg is).
newer() {
	if command -v dpkg >/dev/null 2>&1; then
		dpkg --compare-versions "$1" gt "$2"
	else
		[ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$1" ]
	fi
}

# The newest release heading of CHANGELOG.md as committed at HEAD (the
# format scripts/debchangelog reads), its version, and the commit that
# added that line: the oldest commit that changed its count in the file.
cl_base="" cl_count=""
changelog=$(git show HEAD:CHANGELOG.md 2>/dev/null || true)
if heading=$(grep -m1 -E '^## +v?[0-9][0-9A-Za-z.+~]* +(-|–|—) +[0-9]{4}-[0-9]{2}-[0-9]{2} *$' <<<"$changelog"); then
	cl_base=$(sed -E 's/^## +v?([^ ]+) .*/\1/' <<<"$heading")
	since=$(git log --format=%H -S"$heading" HEAD -- CHANGELOG.md | tail -1)
	if [ -n "$since" ]; then
		cl_count=$(git rev-list --count "$since..HEAD")
	else
		cl_count=$(git rev-list --count HEAD)
	fi
fi

if desc=$(git describe --tags --long --abbrev=7 --match 'v[0-9]*.[0-9]*.[0-9]*' HEAD 2>/dev/null); then
	# v0.2.0-5-g1a2b3c4 (the tag itself may contain dashes: v0.2.0-rc1-5-g...)
	rest=${desc%-g*}
	count=${rest##*-}
	tag=${rest%-*}
	base=${tag#v}
	base=${base//-/\~}
	if [ -n "$cl_base" ] && newer "$cl_base" "$base"; then
		base=$cl_base count=$cl_count
	fi
elif [ -n "$cl_base" ]; then
	base=$cl_base count=$cl_count tag="CHANGELOG.md's $cl_base"
else
	base=0.0.0
	count=$(git rev-list --count HEAD)
fi
if [ "$(git rev-parse --is-shallow-repository)" = true ] && [ -z "${desc:-}" ]; then
	echo "version.sh: shallow clone without a v* tag in reach: the version counts only the $count commits present since ${tag:-the first}; 'git fetch --unshallow --tags' gives the real one" >&2
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
