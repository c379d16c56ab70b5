// Package freeze holds a running container's writable layer still while it
// is copied, and guarantees that the hold ends: a consistent copy of a
// running container costs it a pause, never a hang.
//
// # What is frozen
//
//   - An image layer (lxc-hook-loopimg): its ext4 filesystem, with FIFREEZE.
//     The filesystem is mounted only in the container's (detached) mount
//     tree, out of the host's reach by path; so the loop device, opened and
//     proven bound to the image by the caller, is mounted once more with
//     fsopen/fsmount into a detached mount that no namespace holds and no
//     path reaches. The kernel hands back the container's own superblock,
//     and FIFREEZE on its root blocks every write inside (readers go on),
//     flushes the dirty data and checkpoints the journal: a copy of the
//     image file taken meanwhile needs no journal replay (e2fsck -fn
//     passes; only files deleted while open, the orphan list, are released
//     as a mount would). Nothing of the container is looked up by name: no
//     path under the layer is resolved and no link is followed.
//   - A directory layer (lxc-hook-overlay, lxc-hook-aufs): the container's
//     processes, with the cgroup freezer (cgroup v1 freezer.state, or v2
//     cgroup.freeze), on the cgroup that is the root of the container's
//     cgroup namespace (found through its init: pidfd, /proc/PID/cgroup read
//     from the host and from inside that namespace), which holds every
//     process of the container, also those systemd moved into sub-cgroups.
//     LXC's lxc-freeze is not used: on cgroup v1 it polls the state once a
//     second, which would add up to a second to every freeze.
//
// # Never left frozen
//
// FIFREEZE and the cgroup freezer have no owner: a filesystem or cgroup
// stays frozen after the process that froze it dies. So the freeze is held
// by a watchdog, a child process started first (this very binary, exec'd
// from /proc/self/exe under the name WatchdogName, dispatched by the hook
// binaries' main before anything else), which freezes, then waits on a
// pipe from the copier and thaws when the pipe closes: when the copier
// asks, or dies in any way (SIGKILL included: the kernel closes its end).
// The watchdog is bounded on its own: it thaws after Options.Max even if
// the copier hangs, and the copier then fails the copy (the freeze no
// longer held). It runs in a process group of its own (Ctrl-C and a kill
// of the copier's group do not reach it), ignores the signals a terminal
// or a service manager sends first, and is the OOM killer's last choice.
// Before it thaws it checks that the freeze was still in place (FIFREEZE
// answers EBUSY on a frozen filesystem): one lifted meanwhile by someone
// else makes the copy fail instead of keeping an inconsistent one.
//
// What is not covered: SIGKILL of the watchdog and the copier together
// (a kill of every process of a cgroup) leaves the freeze; the copier alone
// surviving thaws it itself. The remedy then is lxc-unfreeze -n NAME for a
// directory layer, and for an image mounting its loop device anywhere and
// running fsfreeze -u there.
package freeze
