#!/bin/bash
# Installs, where missing, what building the hooks, the demo and the tests
# need on Debian 12 (as root), and prints the go command to use.
# Sourced by demo.sh and test.sh: sets GO.
set -euo pipefail

# rsync: lxc-copy and lxc-snapshot copy a rootfs with it; lxc only Recommends
# it, and --no-install-recommends below leaves it out.
# uidmap: newuidmap/newgidmap, with which test/security_ids_test.go shows
# that a user whose /etc/subuid range overlaps a container's IDs can become
# the container's root (lxc only Recommends it too).
# passwd: useradd/userdel, for the tests' real non-root users. git: the
# version of scripts/build.sh, and the old release the upgrade test builds.
# debootstrap: the Debian bookworm root of the systemd test
# (test/systemd_test.go), built once per machine into
# /var/cache/lxc-hooks-test.
# bindfs: a user's FUSE mount that claims to be root's, which
# test/security_paths_test.go shows the hooks refuse.
packages=(lxc rsync squashfs-tools busybox-static e2fsprogs erofs-utils util-linux mount procps make dpkg tar xz-utils zstd strace uidmap passwd git debootstrap bindfs)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Go 1.22 or newer: the machine's own, or Debian's from bookworm-backports.
go_ok() {
	local v
	v=$("$1" env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	[ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 22 ]; }
}
GO=""
for cand in "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go-1.2[2-9]/bin/go; do
	if [ -n "$cand" ] && [ -x "$cand" ] && go_ok "$cand"; then GO=$cand; break; fi
done

if [ ${#missing[@]} -gt 0 ] || [ -z "$GO" ]; then
	export DEBIAN_FRONTEND=noninteractive
	if [ -z "$GO" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
		# bookworm-backports from the mirror this machine already uses.
		mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
		[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
		if [ -z "$mirror" ]; then
			echo "deps.sh: no Go 1.22+ and no Debian mirror found in the apt sources to add bookworm-backports from" >&2
			exit 1
		fi
		echo "deb $mirror bookworm-backports main" > /etc/apt/sources.list.d/lxc-hooks-backports.list
	fi
	apt-get update -q
	if [ ${#missing[@]} -gt 0 ]; then
		apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
	if [ -z "$GO" ]; then
		apt-get install -y -q -t bookworm-backports golang-1.23-go
		GO=/usr/lib/go-1.23/bin/go
	fi
fi
export GO
# Never download another toolchain: go.mod asks for 1.22, which any of these is.
export GOTOOLCHAIN=local
