// Package idmap is what the hooks need for unprivileged containers (LXC
// configs with lxc.idmap, started by root): the mapping itself (parsed from
// lxc.idmap lines, and root's ranges in /etc/subuid and /etc/subgid for
// init), a user namespace with exactly that mapping, idmapped clones of the
// template's mounts, and the ownership record of a writable layer.
//
// The template is never chowned or written: its lowers are idmapped mounts,
// so a file owned by host root shows as owned by the container's root. The
// writable layer is not idmapped: what the container writes is stored with
// the container's mapped IDs on the host (100000 for its root with the usual
// mapping), as LXC's own unprivileged containers store their rootfs.
package idmap
