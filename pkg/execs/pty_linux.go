package execs

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OpenPTY makes a new pseudo-terminal of cols columns and returns its
// master and its other end, which a tool gets as stdout and stderr. The
// other end is opened from the master's fd (TIOCGPTPEER, Linux 4.13),
// not by its name in /dev/pts, so no other pty can be swapped in. The
// caller closes both; reads from the master end with EIO once every
// holder of the other end has closed it. The master is non-blocking, read
// through package os's poller.
func OpenPTY(cols uint16) (master, tty *os.File, err error) {
	// Non-blocking: package os then reads it through its poller, and a
	// Close ends a read that waits.
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	fail := func(op string, err error) (*os.File, *os.File, error) {
		master.Close()
		return nil, nil, &os.SyscallError{Syscall: op, Err: err}
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("ioctl TIOCSPTLCK", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return fail("ioctl TIOCGPTPEER", errno)
	}
	if err := unix.IoctlSetWinsize(int(sfd), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
		unix.Close(int(sfd))
		return fail("ioctl TIOCSWINSZ", err)
	}
	return master, os.NewFile(sfd, "pty"), nil
}

// readChars is rchar from a /proc/PID/io file: the bytes the process has
// read with read(2) and its kin, from files and pipes.
func readChars(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("rchar:")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
