package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// OpenDir opens the directory at path (absolute) after checking it and
// every directory on the way from / (see the package doc); what names the
// path in errors ("--upper"). A missing path is an error matching
// fs.ErrNotExist (a *fs.PathError naming the first missing directory).
func OpenDir(path, what string) (*Dir, error) {
	w := newWalk(path, what)
	return w.openDir(false)
}

// MkdirAll is OpenDir, making the directories that are missing (mode perm,
// owned by the caller) on the way and at path.
func MkdirAll(path, what string, perm uint32) (*Dir, error) {
	w := newWalk(path, what)
	w.mkdir, w.perm = true, perm
	return w.openDir(true)
}

func (w *walk) openDir(create bool) (*Dir, error) {
	parent, name, err := w.resolve(true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(parent.fd)
	fd, path := parent.fd, parent.path
	if name != "" {
		path = filepath.Join(parent.path, name)
		fd, err = unix.Openat(parent.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(parent.fd, name, w.perm); err == nil || errors.Is(err, unix.EEXIST) {
				fd, err = unix.Openat(parent.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		defer unix.Close(fd)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, w.statErr(fd, path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, &fs.PathError{Op: "open", Path: path, Err: unix.ENOTDIR}
	}
	if err := w.judge(fd, path, &st, Itself); err != nil {
		return nil, err
	}
	return reopenDir(fd, w.given, w.what)
}

// reopenDir turns the O_PATH fd of a checked directory into one that reads
// (and takes flocks), on the very same directory.
func reopenDir(fd int, path, what string) (*Dir, error) {
	d, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return &Dir{f: os.NewFile(uintptr(d), path), path: path, what: what}, nil
}

// Parent opens the directory holding path's last component after checking
// it and every directory above it as directories on the way (a root-owned
// sticky one passes), and returns it with the last component's name there,
// which need not exist. A symlink at path is followed when root made it
// (the name returned is then its target's). For an image file: the file
// itself is checked when opened (Dir.OpenChecked).
func Parent(path, what string) (*Dir, string, error) {
	w := newWalk(path, what)
	parent, name, err := w.resolve(true)
	if err != nil {
		return nil, "", err
	}
	defer unix.Close(parent.fd)
	if name == "" {
		return nil, "", &fs.PathError{Op: "open", Path: path, Err: unix.EISDIR}
	}
	d, err := reopenDir(parent.fd, parent.path, what)
	if err != nil {
		return nil, "", err
	}
	d.given = path
	return d, name, nil
}

// Open opens what is at path (absolute) after checking it and every
// directory on the way: a directory or a regular file, opened for reading,
// must pass the rule itself. Anything else is returned opened O_PATH only,
// unchecked, for the caller to refuse by its type (st says which).
func Open(path, what string) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	w := newWalk(path, what)
	parent, name, err := w.resolve(true)
	if err != nil {
		return nil, st, err
	}
	defer unix.Close(parent.fd)
	if name == "" {
		d, err := w.openDir(false)
		if err != nil {
			return nil, st, err
		}
		err = unix.Fstat(d.Fd(), &st)
		return d.f, st, err
	}
	full := filepath.Join(parent.path, name)
	fd, err := unix.Openat(parent.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		err = w.statErr(fd, full, err)
		unix.Close(fd)
		return nil, st, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		defer unix.Close(fd)
		if err := w.judge(fd, full, &st, Itself); err != nil {
			return nil, st, err
		}
		d, err := reopenDir(fd, path, what)
		if err != nil {
			return nil, st, err
		}
		return d.f, st, nil
	case unix.S_IFREG:
		err := w.judge(fd, full, &st, Itself)
		unix.Close(fd)
		if err != nil {
			return nil, st, err
		}
		f, err := openSame(parent.fd, name, path, unix.O_RDONLY, &st)
		return f, st, err
	}
	return os.NewFile(uintptr(fd), path), st, nil
}

// openSame opens name in the directory dirfd with flag, never through a
// link, and makes sure it is the file st describes (a regular file,
// checked by the caller).
func openSame(dirfd int, name, path string, flag int, st *unix.Stat_t) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		unix.Close(fd)
		return nil, fmt.Errorf("%s changed while it was checked: try again", path)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Check runs the rule over path (a directory or regular file) and every
// directory on the way, keeping nothing open.
func Check(path, what string) error {
	f, st, err := Open(path, what)
	if err != nil {
		return err
	}
	f.Close()
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFDIR && t != unix.S_IFREG {
		return fmt.Errorf("%s %q is neither a directory nor a regular file", what, path)
	}
	return nil
}
