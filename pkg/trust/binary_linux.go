package trust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// fuseMagic is FUSE's statfs type: owners and modes there are whatever a
// user-space server says, so root-owned means nothing.
const fuseMagic = unix.FUSE_SUPER_MAGIC

// Executable checks that path names a regular file only root can change:
// it resolves path from / one component at a time (never trusting a
// kernel-resolved path), lstat-ing the directories, the symlinks it
// follows and the file. It returns the resolved path of the file.
func Executable(path string) (string, error) {
	return walkBinary(path, path, true)
}

// Running checks the executable of this process, for a hook at start:
// the file that runs (/proc/self/exe, also when an upgrade has replaced
// it meanwhile), the directories above it, and the path LXC ran (argv[0],
// the word on the hook line: a symlink in LXC's hook directory and the
// directories above it). A few lstat and one readlink per component.
//
// In a user namespace other than the host's (an unprivileged container's
// pre-mount, which runs as the container's root, not as host root) it
// cannot judge: host root's files show as the overflow uid, like every
// other unmapped user's. It returns nil there; the hooks that run as host
// root (pre-start) have checked the same binary.
func Running() error {
	err := running()
	var e *BinaryError
	if errors.As(err, &e) && e.Owner == overflowUID && !inInitialUserNS() {
		return nil
	}
	return err
}

// overflowUID is how a user namespace shows an unmapped owner. Only a
// refusal naming it costs the read of the uid map.
const overflowUID = 65534

func running() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("reading /proc/self/exe: %w", err)
	}
	path := strings.TrimSuffix(exe, " (deleted)")
	// From / down, as Executable does, so that the first thing at fault
	// is named: the path LXC ran, links and all, then the directories of
	// the file that runs, unless that path led there (the usual case).
	resolved := ""
	if a := os.Args[0]; filepath.IsAbs(a) {
		if resolved, err = walkBinary(a, a, true); err != nil {
			return err
		}
	}
	if resolved != path {
		if _, err := walkBinary(path, filepath.Dir(path), false); err != nil {
			return err
		}
	}
	// The file that runs, whatever its path leads to now.
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	if e := checkEntry(path, path, &st); e != nil {
		return e
	}
	if e := checkFS(path, "/proc/self/exe", &st); e != nil {
		return e
	}
	return nil
}

// walk resolves path as the kernel would, checking every entry it meets;
// subject is what errors name (the binary, when path is its directory).
// wantFile: the end must be a regular file, else a directory.
func walkBinary(subject, path string, wantFile bool) (string, error) {
	if !filepath.IsAbs(path) {
		return "", &BinaryError{Path: subject, Why: "is not an absolute path: which file runs would depend on the working directory or on PATH"}
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return "", fmt.Errorf("%s: %w", subject, err)
	}
	if e := checkEntry(subject, "/", &st); e != nil {
		return "", e
	}
	if e := checkFS(subject, "/", &st); e != nil {
		return "", e
	}
	cur, dev, isDir := "/", st.Dev, true
	todo := components(path)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			// cur holds no symlink: its parent is the real one.
			cur = filepath.Dir(cur)
			continue
		}
		if !isDir {
			return "", &BinaryError{Path: subject, Why: fmt.Sprintf("cannot be resolved: %s is not a directory", cur)}
		}
		next := filepath.Join(cur, c)
		if err := unix.Lstat(next, &st); err != nil {
			return "", fmt.Errorf("%s: %w", subject, &os.PathError{Op: "lstat", Path: next, Err: err})
		}
		if e := checkEntry(subject, next, &st); e != nil {
			return "", e
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if links++; links > maxLinks {
				return "", fmt.Errorf("%s: %w", subject, &os.PathError{Op: "resolve", Path: path, Err: unix.ELOOP})
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", fmt.Errorf("%s: %w", subject, err)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			todo = append(components(target), todo...)
			continue
		}
		if st.Dev != dev {
			// A mount: the filesystem's type is worth one statfs.
			if e := checkFS(subject, next, &st); e != nil {
				return "", e
			}
			dev = st.Dev
		}
		cur, isDir = next, st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	switch {
	case wantFile && isDir:
		return "", &BinaryError{Path: subject, Why: fmt.Sprintf("is a directory (%s), not an executable", cur)}
	case !wantFile && !isDir:
		return "", &BinaryError{Path: subject, Why: fmt.Sprintf("%s is not a directory", cur)}
	}
	return cur, nil
}

func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// checkEntry checks one file, directory or symlink met on the way.
func checkEntry(subject, at string, st *unix.Stat_t) error {
	e := &BinaryError{Path: subject, At: at, Owner: st.Uid, Mode: fileMode(st)}
	typ := st.Mode & unix.S_IFMT
	switch {
	case typ != unix.S_IFDIR && typ != unix.S_IFREG && typ != unix.S_IFLNK:
		e.Why = "is not a regular file, a directory or a symlink"
	case st.Uid != 0 && int(st.Uid) != euid:
		// A symlink too: in a sticky directory its owner may replace it.
		// The running user's own files are as safe as root's to it (a
		// non-root user running its own build: the unit tests).
		e.Why = "is not owned by root"
	case typ == unix.S_IFLNK:
		return nil // its mode means nothing; its target is walked
	case typ == unix.S_IFDIR && st.Mode&unix.S_ISVTX != 0:
		// Others may add entries but not rename or remove root's.
		return nil
	case st.Mode&0o002 != 0:
		e.Why = "is writable by others"
	case st.Mode&0o020 != 0:
		// Also what a POSIX ACL granting write to anyone shows (the mask).
		e.Why = "is writable by its group"
	default:
		return nil
	}
	return e
}

// checkFS refuses a FUSE filesystem, whose owners and modes prove nothing.
func checkFS(subject, at string, st *unix.Stat_t) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(at, &fs); err != nil {
		return fmt.Errorf("%s: statfs %s: %w", subject, at, err)
	}
	if fs.Type == fuseMagic {
		return &BinaryError{Path: subject, At: at, Owner: st.Uid, Mode: fileMode(st), Why: "is on a FUSE filesystem: its owners and modes are what a user-space server says"}
	}
	return nil
}

var euid = os.Geteuid()

// fileMode turns a stat mode into an os.FileMode for messages
// ("drwxrwxr-x").
func fileMode(st *unix.Stat_t) os.FileMode {
	m := os.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= os.ModeDir
	case unix.S_IFLNK:
		m |= os.ModeSymlink
	case unix.S_IFREG:
	default:
		m |= os.ModeIrregular
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	return m
}

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

// IsUntrusted reports whether err is a refusal of this package (rather
// than, say, a file that does not exist).
func IsUntrusted(err error) bool {
	var e *BinaryError
	return errors.As(err, &e)
}
