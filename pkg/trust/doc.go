// Package trust decides whether host root may use a path given on a hook
// line or a command line (a writable layer, a layer image, a template), and
// then uses it without ever resolving the name again.
//
// # The rule
//
// A layer, an image or a template is used only when no user other than root
// can change it or any directory on the way to it: every directory from /
// down, and the thing itself, must be owned by root and writable by root
// alone. This is sshd's StrictModes, applied to what host root writes,
// chowns, formats and mounts. Two exceptions keep ordinary hosts working:
//
//   - a root-owned sticky directory (/tmp) may stand above: its other users
//     can add entries but not rename or remove root's;
//   - group write is allowed to group root (gid 0): LXC itself makes every
//     container directory 0770 root:root, and the default layer lives there.
//
// Owners and modes only mean something on a kernel filesystem: nothing on
// the way may be on FUSE, whose server (a user's, where /etc/fuse.conf has
// user_allow_other) answers any owner it likes.
//
// Inside a layer, upper/ and work/ and everything below them belong to the
// container (its mapped root for an unprivileged one) by design: they are
// never walked, only opened without following links (see Dir).
//
// # Why names are not enough
//
// A hook that checks a path and then uses it by name races whoever can
// change the directories on the way: between the check and the use, a user
// who owns one of them replaces a file by a symlink or a hardlink, and
// host root truncates, chowns or formats the link's target (/etc/shadow,
// another container's image) or mounts a filesystem image the user crafted.
// So the walk opens each directory from / down, one component at a time,
// relative to the directory before it (openat with O_PATH|O_NOFOLLOW),
// checks what it opened (fstat), and hands out the last directory's fd.
// Everything after that is relative to that fd: openat with O_NOFOLLOW,
// openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, fstatat and fchownat
// with AT_SYMLINK_NOFOLLOW, renameat within the directory. Tools that need
// a name (mke2fs, e2fsck, resize2fs) get /proc/self/fd/N of the file the
// hook opened and checked.
//
// A symlink on the way is followed only when root (or the user running the
// command) owns it, and then its target is walked by the same rules; at
// most 40 links, as the kernel.
//
// # Cost
//
// One openat and one fstat per path component, one more open for the
// directory or file itself: a dozen syscalls, a few microseconds, on every
// start. Owner names are looked up only for the error message.
//
// # Who counts as root
//
// uid 0 of the caller's user namespace, and the caller's own effective uid
// (the same for the hooks; for a person running a command without root, or
// a unit test, their own files are theirs to trust). In a user namespace
// other than the host's, host root shows as the overflow uid and nothing
// would pass: the checks are made by host root (privileged pre-mount,
// pre-start, the operator commands).
package trust
