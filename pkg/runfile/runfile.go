// Package runfile creates the hooks' runtime files (--run-dir) without
// following symlinks: a runtime directory may be given on the hook line,
// and a symlink planted there must not make a root hook create, truncate
// or lock a file elsewhere (/etc/shadow). Directories must be real
// directories owned by this user and writable by no one else.
package runfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir makes dir (and its parents, 0700) and checks that dir itself is a
// directory, not a symlink, owned by this user and not writable by group
// or others: anyone else who can write there could plant links.
func Dir(dir string) error {
	var st unix.Stat_t
	err := unix.Lstat(dir, &st)
	if errors.Is(err, unix.ENOENT) {
		// Nothing is made on FUSE: its server (a user's, mounted with
		// allow_other) says who owns what, so a directory made there could
		// be the user's whatever the checks below see.
		if err := refuseFUSE(dir, existingAncestor(filepath.Dir(dir))); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		err = unix.Lstat(dir, &st)
	}
	if err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("runtime directory %q is not a directory (a symlink?)", dir)
	case int(st.Uid) != os.Geteuid() && st.Uid != 0 && (st.Uid != overflowUID || inInitialUserNS()):
		// Root's, or root's seen from a container's user namespace (the
		// overflow uid), is fine. On the host uid 65534 is a real user
		// (nobody), whose directory (a --run-dir it made first in /tmp)
		// would let it plant links: refused there.
		return fmt.Errorf("runtime directory %q is owned by uid %d, not by this user: refused (chown it, or use another --run-dir)", dir, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("runtime directory %q is writable by others (mode %o): refused (chmod go-w it, or use another --run-dir)", dir, st.Mode&0o7777)
	}
	return refuseFUSE(dir, dir)
}

// refuseFUSE refuses dir when at (dir or the ancestor of it that exists)
// is on a FUSE filesystem.
func refuseFUSE(dir, at string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(at, &sfs); err != nil {
		return err
	}
	if sfs.Type == unix.FUSE_SUPER_MAGIC {
		return fmt.Errorf("runtime directory %q is on a FUSE filesystem (%s), whose owners and modes are whatever its user-space server says: refused (use another --run-dir)", dir, at)
	}
	return nil
}

// existingAncestor is dir, or the nearest directory above it that exists.
func existingAncestor(dir string) string {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || p == "/" || p == "." {
			return p
		}
	}
}

// overflowUID is how a user namespace shows an unmapped owner (host root).
const overflowUID = 65534

// inInitialUserNS tells whether this process is in the host's user
// namespace, whose uid_map is the identity over all uids. A map that
// cannot be read counts as the host's: the stricter answer.
func inInitialUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) != 3 || (f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// Write replaces path with data atomically: written under a fresh random
// name (O_EXCL: never through a link), renamed over path (which replaces a
// symlink there instead of following it). Not synced: runtime records
// describe mounts and loop devices, which a crash of the host ends too,
// and /run is not always a tmpfs (an fsync there waits for the disk on
// every start and stop).
func Write(path string, data []byte) error {
	if err := Dir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Open opens (creating, mode 0600, never truncating) the file path for
// reading and writing, refusing a symlink or anything but a regular file.
func Open(path string) (*os.File, error) {
	if err := Dir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	return f, nil
}

// Mkdir makes the directory path (0700) if missing and checks it is one
// (a symlink there would have a mount follow it).
func Mkdir(path string) error {
	if err := Dir(filepath.Dir(path)); err != nil {
		return err
	}
	if err := os.Mkdir(path, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%q is not a directory (a symlink?)", path)
	}
	return nil
}
