#!/bin/bash
# The demo on a fresh Debian 12 as root: installs what it needs, builds the
# hooks, builds a busybox template as a squashfs image, and boots a container
# from it with lxc-hook-loopimg and a 64M cap. It shows the cap (df inside, a
# write that hits ENOSPC), persistence over a restart, and that nothing is
# left mounted or attached after lxc-stop. Run it again: the layer persists.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/deps.sh
GO=$GO ./scripts/build.sh bin

demo=${DEMO_DIR:-/var/lib/lxc-hooks-demo}
lxcpath=$demo/lxc
name=capped-demo
tpl=$demo/busybox.squashfs
img=$lxcpath/$name/layer.img
mkdir -p "$lxcpath/$name/rootfs"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -f "$tpl" ]; then
	say "building the template $tpl (busybox-static in a squashfs)"
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
	mksquashfs "$stage" "$tpl" -noappend -quiet -no-progress
	rm -rf "$stage"
fi

hook="$repo/bin/lxc-hook-loopimg --lower $tpl --image $img --size 64M"
cat > "$lxcpath/$name/config" <<CONF
lxc.uts.name = $name
lxc.rootfs.path = dir:$lxcpath/$name/rootfs
lxc.init.cmd = /sbin/init
lxc.signal.halt = SIGUSR2
lxc.net.0.type = empty
lxc.apparmor.profile = unconfined
lxc.mount.auto = proc:mixed sys:ro
lxc.autodev = 1
lxc.log.file = $lxcpath/$name/$name.log
lxc.log.level = WARN
lxc.hook.pre-mount = $hook
lxc.hook.stop = $hook
lxc.hook.post-stop = $hook
CONF

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

say "lxc-stop -n $name -P $lxcpath"
time lxc-stop -n "$name" -P "$lxcpath"

say "after lxc-stop: loop devices of the template and image (expect none)"
left=$( (losetup -j "$tpl"; losetup -j "$img") | wc -l)
(losetup -j "$tpl"; losetup -j "$img")
echo "$left loop device(s) left"
say "after lxc-stop: mounts of the container's layers on the host (expect none)"
grep -c -e "$lxcpath" -e lxc-hook /proc/self/mountinfo || true
say "e2fsck -fn $img"
e2fsck -fn "$img"
sum_after=$(sha256sum "$tpl" | cut -d' ' -f1)
say "template unchanged: $([ "$sum_before" = "$sum_after" ] && echo yes || echo NO)"
[ "$left" -eq 0 ] && [ "$sum_before" = "$sum_after" ]
