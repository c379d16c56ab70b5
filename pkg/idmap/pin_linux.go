package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/runfile"
)

// UserNSDir keeps the pinned user namespaces, one per mapping: host-wide,
// on the runtime tmpfs, so they go at reboot.
const UserNSDir = "/run/lxc-hooks/userns"

// PinnedUserNS returns an open user namespace with the mapping m. The
// first start with a mapping makes one (NewUserNS: one short-lived
// process) and pins it with a bind mount of its nsfs file in dir, as
// `ip netns add` pins a network namespace; every later start with the
// same mapping opens that file, at no process's cost: an unprivileged
// start then runs exactly one process, its pre-start hook. The pin holds
// no filesystem and no device, only the namespace itself. note says what
// was made ("" when the pin was there).
//
// dir must be root's and closed to others (runfile.Dir checks): the
// mapping of a pinned namespace cannot be read back without a process in
// it, so the file's name, which is the mapping, is trusted as far as the
// directory is.
func PinnedUserNS(dir, exe string, m *Mapping) (ns *os.File, note string, err error) {
	path := filepath.Join(dir, pinName(m))
	if f, ok := openPinned(path); ok {
		return f, "", nil
	}
	if err := runfile.Dir(dir); err != nil {
		return nil, "", err
	}
	unlock, err := lockPins(dir)
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	// Another start may have pinned it while this one waited.
	if f, ok := openPinned(path); ok {
		return f, "", nil
	}
	if ns, err = NewUserNS(exe, m); err != nil {
		return nil, "", err
	}
	if err := pin(ns, path); err != nil {
		// Usable all the same: the next start pays for the process again.
		return ns, fmt.Sprintf("made a user namespace for %s; not pinned: %v", m, err), nil
	}
	note = fmt.Sprintf("made a user namespace for %s, pinned on %s", m, path)
	if dropped := prunePins(dir, filepath.Base(path)); dropped > 0 {
		note += fmt.Sprintf("; %d older pins dropped (more than %d)", dropped, MaxPins)
	}
	return ns, note, nil
}

// MaxPins bounds the pins kept: a mapping is pinned until reboot, and a
// host that makes and destroys containers with ID blocks of their own
// (init --isolated, copies of them) would otherwise pin one more user
// namespace per container for ever (each counts against root's
// user.max_user_namespaces). Past the bound every other pin is dropped at
// once: a mapping still in use then costs its next start one short-lived
// process, once, and nothing has to know which mappings are still used.
var MaxPins = 512

// prunePins drops every pin in dir but keep when there are more than
// MaxPins, and says how many it dropped. Called under the pins' lock.
func prunePins(dir, keep string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var names []string
	for _, e := range ents {
		// Pins only: regular files (as the directory lists a mount point),
		// never a link or anything else someone put there.
		if n := e.Name(); !strings.HasPrefix(n, ".") && n != keep && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	if len(names)+1 <= MaxPins {
		return 0
	}
	dropped := 0
	for _, n := range names {
		p := filepath.Join(dir, n)
		// Only pins: a regular file (nsfs shows as one), never through a
		// link (umount2 follows one at the last component).
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		// A file that is not mounted on (a start killed half-way) goes too.
		if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			continue
		}
		if os.Remove(p) == nil {
			dropped++
		}
	}
	return dropped
}

// pinName is a file name that spells the mapping, e.g.
// "u0-100000-65536.g0-100000-65536".
func pinName(m *Mapping) string {
	var b strings.Builder
	for i, rs := range [][]Range{m.UID, m.GID} {
		if i > 0 {
			b.WriteByte('.')
		}
		for j, r := range rs {
			if j > 0 {
				b.WriteByte('_')
			}
			fmt.Fprintf(&b, "%c%d-%d-%d", "ug"[i], r.Inside, r.Outside, r.Count)
		}
	}
	return b.String()
}

// openPinned opens path if it is a pinned user namespace made by root.
func openPinned(path string) (*os.File, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	if isUserNS(f) {
		return f, true
	}
	f.Close()
	return nil, false
}

func isUserNS(f *os.File) bool {
	var sfs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &sfs) != nil || sfs.Type != unix.NSFS_MAGIC {
		return false
	}
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWUSER {
		return false
	}
	// NS_GET_OWNER_UID: the uid that made it, root for ours.
	var owner uint32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.NS_GET_OWNER_UID, uintptr(unsafe.Pointer(&owner))); e != 0 || owner != 0 {
		return false
	}
	return true
}

// pin bind-mounts the namespace ns onto path (a new empty file; a stale
// file left by a start killed half-way is replaced).
func pin(ns *os.File, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		// Something is mounted there that is not a user namespace of ours.
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return err
	}
	f.Close()
	src := fmt.Sprintf("/proc/self/fd/%d", ns.Fd())
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pinning the user namespace on %s: %w", path, err)
	}
	return nil
}

// lockPins serializes making pins: two starts would stack two mounts.
// Bounded: the holder only starts one process and mounts.
func lockPins(dir string) (func(), error) {
	f, err := runfile.Open(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: still held after 10s", f.Name())
		}
		time.Sleep(2 * time.Millisecond)
	}
}
