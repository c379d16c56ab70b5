package trust

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is a directory open for reading, found by a checked walk (OpenDir,
// MkdirAll, Parent), or below one (Sub). Its methods work relative to its
// fd and follow no symlink, whoever made it: under a layer, upper/ and
// work/ belong to the container, and anything there may be a link planted
// to make host root write, truncate or chown another file.
type Dir struct {
	f    *os.File
	path string // for messages and for mounts: the path as given
	what string
	// given is the path the caller asked for, when the directory holds it
	// (Parent).
	given string
}

// Path is the directory's path as the caller gave it (the directory of
// it, for Parent), for messages and mount options.
func (d *Dir) Path() string { return d.path }

// Fd is the directory's fd (valid until Close).
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// File is the directory's open file (for flock, fsync).
func (d *Dir) File() *os.File { return d.f }

// Close closes the directory.
func (d *Dir) Close() error { return d.f.Close() }

// Join is the path of name in d, for messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// LinkError is a symlink met where the hooks follow none.
type LinkError struct{ Path string }

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link (or has one on its way), and the hooks follow no link under a layer or beside an image: remove it; a link there can only have been planted, to make host root write, truncate or chown another file", e.Path)
}

func (d *Dir) pathErr(op, name string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return &LinkError{Path: d.Join(name)}
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES) {
		// O_DIRECTORY|O_NOFOLLOW on a link answers ENOTDIR; O_CREAT on
		// another user's link in a sticky directory EACCES.
		var st unix.Stat_t
		if unix.Fstatat(d.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return &LinkError{Path: d.Join(name)}
		}
	}
	return &fs.PathError{Op: op, Path: d.Join(name), Err: err}
}

// openat2 availability: Linux 5.6. Before it, single names are opened with
// O_NOFOLLOW, which covers their one component.
var noOpenat2 bool

// openFd opens name (a path below d, no ".." out of it) with flag, never
// following a link on the way or at the end.
func (d *Dir) openFd(name string, flag int, perm uint32) (int, error) {
	if !noOpenat2 {
		how := unix.OpenHow{
			Flags:   uint64(flag | unix.O_NOFOLLOW | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		if flag&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
			how.Mode = uint64(perm)
		}
		fd, err := unix.Openat2(d.Fd(), name, &how)
		if !errors.Is(err, unix.ENOSYS) {
			return fd, err
		}
		noOpenat2 = true
	}
	if strings.Contains(name, "/") {
		return -1, unix.ENOSYS // not needed by the hooks on such kernels
	}
	return unix.Openat(d.Fd(), name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
}

// Open opens name below d with flag (and perm when it creates), following
// no link: a link anywhere on the way is a *LinkError.
func (d *Dir) Open(name string, flag int, perm uint32) (*os.File, error) {
	fd, err := d.openFd(name, flag, perm)
	if err != nil {
		return nil, d.pathErr("open", name, err)
	}
	return os.NewFile(uintptr(fd), d.Join(name)), nil
}

// Sub opens the directory name below d, following no link. Its owner is
// not checked: below a layer, directories are the container's.
func (d *Dir) Sub(name string) (*Dir, error) {
	f, err := d.Open(name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f, path: d.Join(name), what: d.what}, nil
}

// Lstat is fstatat(AT_SYMLINK_NOFOLLOW) of name in d.
func (d *Dir) Lstat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &fs.PathError{Op: "lstat", Path: d.Join(name), Err: err}
	}
	return st, nil
}

// ReadFile reads the regular file name in d (at most 1 MiB), never through
// a link; a missing file is an error matching fs.ErrNotExist.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.Open(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", f.Name())
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// WriteFile replaces the file name in d with data: written to a new file
// of a random name (O_CREAT|O_EXCL, never through a link), renamed over
// name within d (which replaces a link there rather than follows it).
func (d *Dir) WriteFile(name string, data []byte, perm uint32) error {
	var tmp string
	var f *os.File
	var err error
	for i := 0; i < 3; i++ {
		tmp = fmt.Sprintf(".%s.%016x.tmp", name, rand.Uint64())
		if f, err = d.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm); !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = unix.Renameat(d.Fd(), tmp, d.Fd(), name); err != nil {
			err = d.pathErr("rename", name, err)
		}
	}
	if err != nil {
		unix.Unlinkat(d.Fd(), tmp, 0)
	}
	return err
}

// Remove unlinks the file (or link) name in d; a missing one is not an error.
func (d *Dir) Remove(name string) error {
	if err := unix.Unlinkat(d.Fd(), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// Mkdir makes the directory name in d with mode perm (not subject to the
// umask) unless it exists; an existing one must be a directory, not a link.
func (d *Dir) Mkdir(name string, perm uint32) error {
	err := unix.Mkdirat(d.Fd(), name, perm)
	if err == nil {
		s, err := d.Sub(name)
		if err != nil {
			return err
		}
		defer s.Close()
		return s.f.Chmod(os.FileMode(perm) & os.ModePerm)
	}
	if !errors.Is(err, unix.EEXIST) {
		return d.pathErr("mkdir", name, err)
	}
	st, err := d.Lstat(name)
	if err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return nil
	case unix.S_IFLNK:
		return &LinkError{Path: d.Join(name)}
	}
	return fmt.Errorf("%s exists and is not a directory", d.Join(name))
}

// Chown changes the owner of name in d, which must not be a link (its
// target would be chowned by name elsewhere).
func (d *Dir) Chown(name string, uid, gid int) error {
	fd, err := d.openFd(name, unix.O_PATH, 0)
	if err != nil {
		return d.pathErr("chown", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return d.pathErr("chown", name, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &LinkError{Path: d.Join(name)}
	}
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return d.pathErr("chown", name, err)
	}
	return nil
}

// OpenChecked opens the regular file name in d with flag after checking it
// by the rule (root's, writable by root alone): for an image beside which
// d was found by Parent. A missing file matches fs.ErrNotExist.
func (d *Dir) OpenChecked(name string, flag int) (*os.File, unix.Stat_t, error) {
	full := d.Join(name)
	given := d.given
	if given == "" {
		given = full
	}
	fd, err := unix.Openat(d.Fd(), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	var st unix.Stat_t
	if err != nil {
		return nil, st, &fs.PathError{Op: "open", Path: given, Err: err}
	}
	defer unix.Close(fd)
	w := &walk{what: d.what, given: given, self: uint32(os.Geteuid())}
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, w.statErr(fd, full, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, fmt.Errorf("%s %q is not a regular file (%s)", d.what, given, typeName(st.Mode))
	}
	if err := w.judge(fd, full, &st, Itself); err != nil {
		return nil, st, err
	}
	f, err := openSame(d.Fd(), name, given, flag, &st)
	return f, st, err
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a fifo"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "a regular file"
}
