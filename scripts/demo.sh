#!/bin/bash
# The demo on a fresh Debian 12 as root: installs what it needs, builds the
# hooks and installs them (make install) into a root-owned prefix in the
# demo's directory, builds a busybox template image with the hooks' own
# `template` command (the default format, erofs), and boots a container
# from it with lxc-hook-loopimg and a 64M cap. It shows the cap (df inside, a
# write that hits ENOSPC), persistence over a restart, and that nothing is
# left mounted or attached after lxc-stop. Run it again: the layer persists.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
# Everything the demo makes is root's and writable by no one else.
umask 022

demo=${DEMO_DIR:-/var/lib/lxc-hooks-demo}
lxcpath=$demo/lxc
name=${DEMO_NAME:-capped-demo}
tpl=$demo/busybox.erofs
img=$lxcpath/$name/layer.img
mkdir -p "$lxcpath"
# LXC runs the hook binary as root at every start, stop and copy: it must
# be a file no other user can replace, not the build in this checkout
# (which may be a user's). make install puts it in a root-owned prefix, as
# the package does in /usr; init refuses a binary a user could replace.
prefix=$demo/prefix
make --no-print-directory install GO="$GO" PREFIX="$prefix" >/dev/null
hookbin=$prefix/bin/lxc-hook-loopimg

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -f "$tpl" ]; then
	say "$hookbin template $tpl --from DIR (busybox-static)"
	stage=$(mktemp -d)
	mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,root,run,var}
	cp /bin/busybox "$stage/bin/busybox"
	for c in sh ls cat echo sleep df dd sync rm mount head tail uname hostname; do ln -s busybox "$stage/bin/$c"; done
	cat > "$stage/sbin/init" <<'INIT'
#!/bin/sh
trap 'sync; exit 0' USR2 PWR TERM
while :; do sleep 3600 & wait $!; done
INIT
	chmod 755 "$stage/sbin/init"
	echo "busybox template" > "$stage/etc/motd"
	"$hookbin" template "$tpl" --from "$stage"
	rm -rf "$stage"
fi

lxc-stop -k -n "$name" -P "$lxcpath" 2>/dev/null || true
if [ ! -f "$lxcpath/$name/config" ]; then
	# The demo host may have no lxcbr0: a network-less default config.
	printf 'lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n' > "$demo/default.conf"
	say "$hookbin init $name --template $tpl --size 64M -P $lxcpath"
	"$hookbin" init "$name" --template "$tpl" --size 64M -P "$lxcpath" --default-config "$demo/default.conf"
	# The busybox init stops on SIGUSR2; a log the demo can show.
	printf 'lxc.signal.halt = SIGUSR2\nlxc.log.file = %s\nlxc.log.level = WARN\n' "$lxcpath/$name/$name.log" >> "$lxcpath/$name/config"
elif ! grep -qF "= $hookbin " "$lxcpath/$name/config"; then
	# A config an earlier demo wrote with the checkout's own build: its hook
	# lines now name the installed binary (the hooks refuse to start from
	# one a user could replace).
	sed -i -E "s|^(lxc\.hook\.[a-z-]+ = )[^ ]*/lxc-hook-loopimg |\1$hookbin |" "$lxcpath/$name/config"
fi
lxc-stop -k -n "$name" -P "$lxcpath" 2>/dev/null || true
sum_before=$(sha256sum "$tpl" | cut -d' ' -f1)

say "the config's hook lines"
grep '^lxc.hook' "$lxcpath/$name/config"

say "lxc-start -n $name -P $lxcpath"
time lxc-start -n "$name" -P "$lxcpath"
inside() { lxc-attach -n "$name" -P "$lxcpath" --clear-env -- /bin/sh -c "$1"; }

say "inside: df -h / (the 64M cap)"
inside 'df -h /'
say "inside: this container has booted this many times (the layer persists)"
inside 'echo boot >> /root/boots; wc -l < /root/boots'
say "inside: writing 200M into the 64M layer"
inside 'dd if=/dev/zero of=/fill bs=1M count=200 2>&1 | tail -2; df -h / | tail -1' || true
inside 'rm -f /fill; sync'
say "on the host: the image stays 64M (apparent size, then blocks in use)"
ls -lh "$img"
du -h "$img"

say "loop devices while running (template, image)"
losetup -j "$tpl"; losetup -j "$img"

say "$hookbin status $name -P $lxcpath"
"$hookbin" status "$name" -P "$lxcpath"

say "lxc-stop -n $name -P $lxcpath"
time lxc-stop -n "$name" -P "$lxcpath"

say "after lxc-stop: loop devices of the template and image (expect none)"
left=$( (losetup -j "$tpl"; losetup -j "$img") | wc -l)
(losetup -j "$tpl"; losetup -j "$img")
echo "$left loop device(s) left"
say "after lxc-stop: mounts of the container's layers on the host (expect none)"
# The container's root, its layers and the template (by path), and the
# hooks' runtime mounts of this container (by name). The user namespaces
# pinned in /run/lxc-hooks/userns, one per ID mapping, are not the
# container's and stay until reboot (see the README).
mounted=$(grep -e "$lxcpath" -e "$tpl" -e "/run/lxc-hooks/.*$name" /proc/self/mountinfo | grep -vc " - nsfs " || true)
echo "$mounted mount(s) left"
say "e2fsck -fn $img"
e2fsck -fn "$img"
sum_after=$(sha256sum "$tpl" | cut -d' ' -f1)
say "template unchanged: $([ "$sum_before" = "$sum_after" ] && echo yes || echo NO)"
[ "$left" -eq 0 ] && [ "$mounted" -eq 0 ] && [ "$sum_before" = "$sum_after" ]
