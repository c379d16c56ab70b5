package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLinks bounds the symlinks one walk follows, as the kernel does.
const maxLinks = 40

type node struct {
	fd   int // O_PATH
	path string
}

type walk struct {
	what, given string
	self        uint32
	stack       []node
	// mkdir makes missing directories on the way (mode perm).
	mkdir bool
	perm  uint32
}

func (w *walk) top() node { return w.stack[len(w.stack)-1] }

func (w *walk) closeAll() {
	for _, n := range w.stack {
		unix.Close(n.fd)
	}
	w.stack = nil
}

func (w *walk) pop() {
	unix.Close(w.top().fd)
	w.stack = w.stack[:len(w.stack)-1]
}

func entryOf(st *unix.Stat_t) Entry { return Entry{Mode: st.Mode, UID: st.Uid, GID: st.Gid} }

// judge refuses st (found at path, opened as fd) when someone other than
// root can change it in role r. A FUSE filesystem is refused whatever it
// says: its owners and modes are a user-space server's answer, and a user
// may mount one (fusermount is setuid) on a directory or file of their own
// inside a root-owned sticky directory, where it would pass as root's.
// fd < 0 skips that check (a symlink: its directory was checked).
func (w *walk) judge(fd int, path string, st *unix.Stat_t, r Role) error {
	if fd >= 0 {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err != nil {
			return &fs.PathError{Op: "statfs", Path: path, Err: err}
		}
		if sfs.Type == fuseMagic {
			return &Error{What: w.what, Path: w.given, At: path, Entry: entryOf(st), FUSE: true}
		}
	}
	if p, fix := Problem(entryOf(st), r, w.self); p != "" {
		return &Error{What: w.what, Path: w.given, At: path, Entry: entryOf(st), Problem: p, Fix: fix}
	}
	return nil
}

// statErr is the error for an fstat of fd (at path) that failed: a FUSE
// mount made without allow_other answers EACCES even to root, and is
// named as FUSE rather than as a bare "permission denied".
func (w *walk) statErr(fd int, path string, err error) error {
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) == nil && sfs.Type == fuseMagic {
		return &Error{What: w.what, Path: w.given, At: path, FUSE: true, Unreadable: true}
	}
	return &fs.PathError{Op: "stat", Path: path, Err: err}
}

func (w *walk) notExist(path string) error {
	return &fs.PathError{Op: "open", Path: path, Err: unix.ENOENT}
}

// resolve walks the absolute path given from / and returns the checked
// directory holding its last component (its O_PATH fd, owned by the
// caller) and that component's name, which may not exist. Symlinks on the
// way are followed when a trusted owner made them, the last one too when
// followLast; a last component "" means the directory itself (a path
// ending in "/" or "..").
func (w *walk) resolve(followLast bool) (node, string, error) {
	if !filepath.IsAbs(w.given) {
		return node{}, "", fmt.Errorf("%s %q is not an absolute path", w.what, w.given)
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return node{}, "", fmt.Errorf("%s %q: open /: %w", w.what, w.given, err)
	}
	w.stack = []node{{root, "/"}}
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		w.closeAll()
		return node{}, "", err
	}
	if err := w.judge(root, "/", &st, Above); err != nil {
		w.closeAll()
		return node{}, "", err
	}
	pending := strings.Split(w.given, "/")
	links := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			if len(pending) == 0 {
				return w.finish("")
			}
			continue
		case "..":
			if len(w.stack) > 1 {
				w.pop()
			}
			if len(pending) == 0 {
				return w.finish("")
			}
			continue
		}
		last := len(pending) == 0
		parent := w.top()
		path := filepath.Join(parent.path, name)
		fd, err := unix.Openat(parent.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if last {
				return w.finish(name)
			}
			if !w.mkdir {
				w.closeAll()
				return node{}, "", w.notExist(path)
			}
			if err := unix.Mkdirat(parent.fd, name, w.perm); err != nil && !errors.Is(err, unix.EEXIST) {
				w.closeAll()
				return node{}, "", &fs.PathError{Op: "mkdir", Path: path, Err: err}
			}
			fd, err = unix.Openat(parent.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			w.closeAll()
			return node{}, "", &fs.PathError{Op: "open", Path: path, Err: err}
		}
		if err := unix.Fstat(fd, &st); err != nil {
			err = w.statErr(fd, path, err)
			unix.Close(fd)
			w.closeAll()
			return node{}, "", err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if last && !followLast {
				unix.Close(fd)
				return w.finish(name)
			}
			if err := w.judge(-1, path, &st, Link); err != nil {
				unix.Close(fd)
				w.closeAll()
				return node{}, "", err
			}
			if links++; links > maxLinks {
				unix.Close(fd)
				w.closeAll()
				return node{}, "", &fs.PathError{Op: "open", Path: w.given, Err: unix.ELOOP}
			}
			target, err := readlinkFd(fd)
			unix.Close(fd)
			if err != nil {
				w.closeAll()
				return node{}, "", &fs.PathError{Op: "readlink", Path: path, Err: err}
			}
			if strings.HasPrefix(target, "/") {
				for len(w.stack) > 1 {
					w.pop()
				}
			}
			pending = append(strings.Split(target, "/"), pending...)
			continue
		}
		if last {
			unix.Close(fd)
			return w.finish(name)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(fd)
			w.closeAll()
			return node{}, "", &fs.PathError{Op: "open", Path: path, Err: unix.ENOTDIR}
		}
		if err := w.judge(fd, path, &st, Above); err != nil {
			unix.Close(fd)
			w.closeAll()
			return node{}, "", err
		}
		w.stack = append(w.stack, node{fd, path})
	}
	return w.finish("")
}

// finish keeps the top directory (handed to the caller) and closes the
// rest of the stack.
func (w *walk) finish(name string) (node, string, error) {
	top := w.top()
	w.stack = w.stack[:len(w.stack)-1]
	w.closeAll()
	return top, name, nil
}

func readlinkFd(fd int) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", unix.ENAMETOOLONG
}

func newWalk(path, what string) *walk {
	return &walk{what: what, given: path, self: uint32(os.Geteuid())}
}
