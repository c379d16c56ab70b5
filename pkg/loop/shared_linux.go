package loop

import (
	"errors"
	"fmt"
	"github.com/lxc-hooks/lxc-hooks/pkg/runfile"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// AttachShared returns an open, read-only, autoclear loop device bound to
// backing (a template image), and whether it adopted one that was already
// bound rather than attaching a new one. Every container started from one
// template then shares one device, so the filesystem on it is mounted once
// (one superblock, one page cache) however many containers use it, as
// util-linux does for read-only loop mounts.
//
// hintDir (may be "") keeps, per backing file, the device last attached for
// it, so that adopting does not scan every loop device on a host with a
// thousand of them; the hint is only a guess, always verified.
//
// A device being released by another container's stop at this moment is
// handled by the kernel's own ordering: the open below either comes first
// (the device then stays bound for us: autoclear waits for the last
// opener) or finds it already running down (LOOP_GET_STATUS64 answers
// ENXIO) and a new device is attached.
func AttachShared(backing *os.File, hintDir string) (*Device, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(backing.Fd()), &st); err != nil {
		return nil, false, err
	}
	dev, ino := uint64(st.Dev), st.Ino
	hint := ""
	if hintDir != "" {
		hint = filepath.Join(hintDir, strconv.FormatUint(dev, 10)+"-"+strconv.FormatUint(ino, 10))
	}
	// Fast path, no lock: the device the hint names is still there.
	if n, ok := readHint(hint); ok {
		if d := adoptable(n, dev, ino); d != nil {
			return d, true, nil
		}
	}
	if hint != "" {
		// One finder-or-attacher at a time per template, or containers
		// starting together would each attach a device of their own.
		unlock, err := lockFile(hint + ".lock")
		if err != nil {
			return nil, false, err
		}
		defer unlock()
	}
	var candidates []int
	if n, ok := readHint(hint); ok {
		candidates = append(candidates, n)
	} else {
		found, err := FindByBacking(dev, ino)
		if err != nil {
			return nil, false, err
		}
		for _, f := range found {
			candidates = append(candidates, f.Number)
		}
	}
	for _, n := range candidates {
		if d := adoptable(n, dev, ino); d != nil {
			return d, true, nil
		}
	}
	d, err := Attach(backing, Options{ReadOnly: true, Autoclear: true})
	if err != nil {
		return nil, false, err
	}
	writeHint(hint, d.Number)
	return d, false, nil
}

// adoptable opens device n and keeps it if it is a whole-file, read-only,
// autoclear binding of the file dev:ino.
func adoptable(n int, dev, ino uint64) *Device {
	d, err := Open(n)
	if err != nil {
		return nil
	}
	st, err := d.Status()
	if err == nil && st.BackingDev == dev && st.BackingIno == ino && st.Offset == 0 && st.SizeLimit == 0 && st.ReadOnly() && st.Autoclear() {
		d.Diskseq = st.Diskseq
		return d
	}
	d.Close()
	return nil
}

func readHint(path string) (int, bool) {
	if path == "" {
		return 0, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// writeHint records n for the next start; losing the race to another
// writer, or failing, costs only a scan later.
func writeHint(path string, n int) {
	if path == "" {
		return
	}
	// Under a random temporary name: a PID is the same in every
	// container's PID namespace.
	runfile.Write(path, []byte(strconv.Itoa(n)+"\n"))
}

// lockWait bounds the wait for the template lock. Its holders keep it for a
// few ioctls (a thousand containers starting at once on two cores queue for
// seconds); only a holder that hangs (stopped by a signal) makes a start
// wait this long, and then fail rather than hang.
var lockWait = 60 * time.Second

// lockFile takes an exclusive flock on path (created if missing), waiting
// at most lockWait.
func lockFile(path string) (func(), error) {
	f, err := runfile.Open(path)
	if err != nil {
		return nil, err
	}
	// A blocking flock queues fairly where polling would starve some
	// waiters; the timer bounds it. On timeout the blocked thread is left
	// behind: the hook exits with the error, and the kernel drops the wait.
	done := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
	case <-time.After(lockWait):
		return nil, fmt.Errorf("lock %s: still held after %s by a hook that does not finish", path, lockWait)
	}
	return func() { f.Close() }, nil
}
