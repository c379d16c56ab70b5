#!/bin/bash
# Builds the Debian package out/lxc-hooks_VERSION_ARCH.deb with dpkg-deb
# from what `make all` built (bin/, out/man/). Called by `make deb`.
# Environment: MAINTAINER ("Name <mail>"), VERSION/COMMIT (else from git
# tags, scripts/version.sh), ARCH, GO, MAKE, SOURCE_DATE_EPOCH.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
: "${GO:=go}" "${MAKE:=make}"
pkg=lxc-hooks
{ read -r version; read -r commit; } < <(./scripts/version.sh)
arch=${ARCH:-$(dpkg --print-architecture)}
# Debian's convention (dch) first, then the project's address.
if [ -z "${MAINTAINER:-}" ] && [ -n "${DEBFULLNAME:-}" ] && [ -n "${DEBEMAIL:-}" ]; then
	MAINTAINER="$DEBFULLNAME <$DEBEMAIL>"
fi
maintainer=${MAINTAINER:-lxc-hooks developers <lxc-hooks@users.noreply.github.com>}
case $maintainer in
*" <"*@*.*">") ;;
*) echo "deb.sh: MAINTAINER must read \"Full Name <mail@example.org>\", not \"$maintainer\"" >&2; exit 1 ;;
esac
# Timestamps of the changelog's newest entry and of the files: the commit's,
# so that the same commit gives the same package.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

# Every Go module linked into the binaries must be in the copyright file.
missing=$("$GO" list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}' ./cmd/... |
	sort -u | while read -r path ver; do
		grep -qxF "Comment: Go module $path $ver" packaging/deb/copyright || echo "$path $ver"
	done)
if [ -n "$missing" ]; then
	echo "deb.sh: packaging/deb/copyright has no stanza for these linked modules (add their license):" >&2
	echo "$missing" >&2
	exit 1
fi

root=out/deb
rm -rf "$root" out/"$pkg"_*.deb
mkdir -p "$root/DEBIAN"
"$MAKE" --no-print-directory install DESTDIR="$PWD/$root" PREFIX=/usr

doc=$root/usr/share/doc/$pkg
install -d "$doc" "$root/usr/share/lintian/overrides"
install -m 0644 packaging/deb/copyright "$doc/copyright"
"$GO" run ./scripts/debchangelog -version "$version" -maintainer "$maintainer" \
	-date "$SOURCE_DATE_EPOCH" < CHANGELOG.md > "$doc/changelog"
install -m 0644 README.md "$doc/README.md"
gzip -9n "$doc/changelog" "$doc/README.md"
install -m 0644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/$pkg"

# Built-Using names the Debian source package of the Go toolchain whose
# standard library is linked in, as Debian's Go packages in bookworm do; a
# toolchain from go.dev belongs to no Debian package and gets no field.
# (Static-Built-Using, the field trixie's Go packages use for this, is
# unknown to bookworm's lintian 2.116: "W: unknown-field".)
built_using=""
# Debian's GOROOT reaches src through a symlink (/usr/lib/go-1.23/src ->
# /usr/share/go-1.23/src); dpkg knows the file by its real path.
runtime_go=$(readlink -f "$("$GO" env GOROOT)/src/runtime/runtime.go")
if owner=$(dpkg-query -S "$runtime_go" 2>/dev/null); then
	owner=${owner%%:*}
	src=$(dpkg-query -W -f='${source:Package} (= ${source:Version})' "$owner")
	built_using="Built-Using: $src"
fi

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
{
	echo "Package: $pkg"
	echo "Version: $version"
	echo "Architecture: $arch"
	echo "Maintainer: $maintainer"
	echo "Installed-Size: $size"
	echo "Depends: lxc, e2fsprogs"
	echo "Suggests: squashfs-tools, erofs-utils"
	[ -z "$built_using" ] || echo "$built_using"
	echo "Section: admin"
	echo "Priority: optional"
	echo "Homepage: https://github.com/lxc-hooks/lxc-hooks"
	cat <<'DESC'
Description: writable layers over read-only LXC container templates
 LXC hooks that boot containers from read-only templates (a directory, or a
 squashfs, erofs or ext4 image file) with a writable overlayfs layer on top,
 kept in a host directory (lxc-hook-overlay) or in a fixed-size ext4 image
 that caps the container's disk use (lxc-hook-loopimg); lxc-hook-aufs does
 the same with AuFS where the kernel has it.
 .
 The layers are mounted in the container's own mount namespace, never on the
 host, and the hooks leave nothing mounted or attached after the container
 stops. The same binaries carry operator commands (init, status, resize,
 release, copy, template, convert), with bash completion, and serve as LXC
 templates: lxc-create -t hooks-loopimg (hooks-overlay, hooks-aufs).
DESC
} > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0r md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
deb=out/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb ($commit)"
