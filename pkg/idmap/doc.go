// Package idmap is what the hooks need for unprivileged containers (LXC
// configs with lxc.idmap, started by root): the mapping itself (parsed from
// lxc.idmap lines), who else has host IDs (other users' ranges in
// /etc/subuid and /etc/subgid, local accounts: a mapping overlapping them
// is refused, since such a user can become the container's users with
// newuidmap), root's range (given one that overlaps nothing where it has
// none) and its blocks of 65536 IDs for isolated containers, a user
// namespace with exactly that mapping, idmapped clones of the template's
// mounts, the ownership record of a writable layer, and moving a layer's
// files from one block to another (a copy of an isolated container).
//
// The template is never chowned or written: its lowers are idmapped mounts,
// so a file owned by host root shows as owned by the container's root. The
// writable layer is not idmapped: what the container writes is stored with
// the container's mapped IDs on the host (100000 for its root with the usual
// mapping), as LXC's own unprivileged containers store their rootfs.
package idmap
