package mount

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// InNamespace runs fn with the calling goroutine's OS thread inside the
// mount namespace at nsPath (e.g. "/proc/PID/fd/N" as LXC passes it to the
// stop hook). fn gets a handle on the host's /proc, opened before entering:
// inside, /proc is not the host's, or not mounted at all.
//
// The thread is locked and never unlocked, so the Go runtime throws it away
// when fn returns instead of reusing a thread in a foreign namespace (runc
// and containerd do the same). CLONE_FS is unshared first because setns into
// a mount namespace is refused (EINVAL) for a thread that shares its
// fs_struct, as every Go thread does.
func InNamespace(nsPath string, fn func(hostProc *os.File) error) error {
	proc, err := os.OpenFile("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /proc: %w", err)
	}
	defer proc.Close()
	ns, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("open mount namespace %s: %w", nsPath, err)
	}
	defer ns.Close()

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread ends with the goroutine.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("setns into mount namespace %s: %w", nsPath, err)
			return
		}
		done <- fn(proc)
	}()
	return <-done
}

// ThreadMounts reads the mount table of the calling thread's mount
// namespace through a handle on the host's /proc, with paths as the
// thread sees them.
func ThreadMounts(hostProc *os.File) ([]*mountinfo.Info, error) {
	fd, err := unix.Openat(int(hostProc.Fd()), "thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc/thread-self/mountinfo: %w", err)
	}
	f := os.NewFile(uintptr(fd), "mountinfo")
	defer f.Close()
	return mountinfo.GetMountsFromReader(io.Reader(f), nil)
}

// DetachRoot takes the calling thread's root mount out of its mount
// namespace, also where the kernel locked it there: the root of an
// unprivileged container is MNT_LOCKED (pivot_root moved the lock of the
// copied host root onto it), and umount(2) refuses a locked mount with
// EINVAL whoever asks. pivot_root moves the lock again: so an empty,
// read-only tmpfs is stacked on the root, the thread pivots into it (the
// lock goes to the tmpfs), and the old root, now unlocked, is detached.
// Processes whose root was the old root get the tmpfs as theirs (pivot_root
// does that); what they still hold open of the old root keeps it alive.
//
// Only for a thread of its own in the namespace (see InNamespace), after
// the container has stopped.
func DetachRoot() error {
	// pivot_root refuses shared mounts around it, and LXC leaves the
	// container's root shared.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the root private: %w", err)
	}
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	for k, v := range map[string]string{"size": "4k", "mode": "0555"} {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("tmpfs %s=%s: %w", k, v, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("tmpfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fmt.Errorf("fsmount tmpfs: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("stacking a tmpfs on the root: %w", err)
	}
	if err := unix.Fchdir(mfd); err != nil {
		return fmt.Errorf("chdir into the tmpfs: %w", err)
	}
	// The pivot_root(".", ".") idiom: the old root ends up stacked on ".".
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into the tmpfs: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &Error{Op: "umount", Target: "the old root", Err: err}
	}
	return nil
}

// InPrivateNamespace runs fn on an OS thread of its own in a new mount
// namespace whose mounts are all slaves of the host's: what fn mounts is
// seen by fn and the tools it starts (they inherit the thread's
// namespace), by nobody else, and nothing propagates to the host. What the
// host unmounts meanwhile does reach it (for the host's shared mounts): the
// namespace starts as a copy of the host's, with a copy of every
// unprivileged container's root attached there, and must not keep one
// that container's stop has unmounted. The thread is never unlocked, so it
// ends with fn, and the namespace goes with it, with every mount fn left
// there (and the autoclear loop devices under them).
func InPrivateNamespace(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			done <- fmt.Errorf("making the new mount namespace a slave of the host's: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}
