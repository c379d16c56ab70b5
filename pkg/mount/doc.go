// Package mount makes and removes the hooks' mounts.
//
// Filesystems are created with the new mount API (fsopen, fsconfig, fsmount,
// move_mount) so that a refused mount reports the kernel's own words, which
// mount(2) sends only to dmesg. Option building (options.go) is pure and
// tested without root; the syscalls live in *_linux.go.
//
// Unmounting is idempotent, deepest first, and lazy (MNT_DETACH): stop hooks
// run again after failures, and a busy mount must still leave the namespace.
package mount
