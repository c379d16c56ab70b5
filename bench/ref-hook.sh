#!/bin/sh
# The reference a sysadmin writes today, for the benchmarks only: what
# lxc-hook-loopimg does, with util-linux "mount -o loop" and "mount -t
# overlay". lxc.hook.pre-mount = ref-hook.sh TEMPLATE IMAGE; LXC appends
# NAME lxc TYPE. The mounts go with the container's mount namespace
# (util-linux sets autoclear on the loop devices); stop has nothing to do.
set -e
tpl=$1 img=$2 type=$5
run=/run/ref-hook/$LXC_NAME
case "$type" in
pre-mount)
	mkdir -p "$run/lower" "$run/image"
	mount -o loop,ro -t squashfs "$tpl" "$run/lower"
	mount -o loop -t ext4 "$img" "$run/image"
	mkdir -p "$run/image/upper" "$run/image/work"
	mount -t overlay overlay -o "lowerdir=$run/lower,upperdir=$run/image/upper,workdir=$run/image/work" "${LXC_ROOTFS_PATH#dir:}"
	;;
esac
