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
