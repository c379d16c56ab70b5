package identity

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

var (
	// errAbsent: the file, or a directory on its way, is not there.
	errAbsent = errors.New("not there")
	// errRefused: something there the hooks must not open or write.
	errRefused = errors.New("refused")
)

// resolve keeps every lookup inside the container's root: no symlink
// (the container can plant one anywhere in its layer, pointing at any host
// path), no /proc magic link, no ".." above the root, no other mount.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// root is the container's root directory, open.
type root struct {
	fd   int
	path string
}

func openRoot(p string) (*root, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return &root{fd: fd, path: p}, nil
}

func (r *root) close() { unix.Close(r.fd) }

func (r *root) openat2(rel string, flags int) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NOCTTY // openat2 refuses it beside O_PATH (EINVAL)
	}
	how := &unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
	var fd int
	var err error
	// EAGAIN: a rename raced the lookup (none should: the container is
	// not running); a few tries, bounded.
	for i := 0; i < 3; i++ {
		if fd, err = unix.Openat2(r.fd, rel, how); !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return -1, errAbsent
	case errors.Is(err, unix.ELOOP):
		return -1, fmt.Errorf("%w: it, or a directory on its way, is a symlink, which is not followed", errRefused)
	case errors.Is(err, unix.EXDEV):
		return -1, fmt.Errorf("%w: it is on another mount", errRefused)
	}
	return -1, fmt.Errorf("/%s: %w", rel, err)
}

// regular opens rel with flags once an O_PATH look (which opens nothing:
// no device is touched, no fifo blocks) found a regular file of at most
// max bytes.
func (r *root) regular(rel string, flags int, max int64) (*os.File, error) {
	pfd, err := r.openat2(rel, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", rel, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK: // O_PATH|O_NOFOLLOW opens the link itself
		return nil, fmt.Errorf("%w: it is a symlink, which is not followed", errRefused)
	default:
		return nil, fmt.Errorf("%w: not a regular file", errRefused)
	}
	if st.Size > max {
		return nil, fmt.Errorf("%w: larger than %d bytes", errRefused, max)
	}
	fd, err := r.openat2(rel, flags|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: not a regular file", errRefused)
	}
	return f, nil
}

// readFile reads the regular file rel, of at most max bytes.
func (r *root) readFile(rel string, max int64) (string, error) {
	f, err := r.regular(rel, unix.O_RDONLY, max)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return "", fmt.Errorf("/%s: %w", rel, err)
	}
	return string(b), nil
}

// rewrite replaces the content of the existing regular file rel. Through
// the union, overlayfs copies a template file up into the layer first,
// with its owner and mode; the template itself is never written.
func (r *root) rewrite(rel, content string) error {
	f, err := r.regular(rel, unix.O_WRONLY|unix.O_TRUNC, 1<<30)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing /%s: %w", rel, err)
	}
	return nil
}

// readNoFollow reads a file of the layer's own (the record), refusing a
// symlink.
func readNoFollow(path string, max int64) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	return string(b), err
}

// writeRecord replaces the record atomically: written under a new name
// (O_EXCL: never through a link), renamed over it (which replaces a link
// there rather than following it). Not synced: an
// ephemeral layer writes it at every start, and a crash of the host loses
// the layer's other recent writes alike.
func writeRecord(path string, rec Record) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err == nil {
		_, err = f.WriteString(rec.String())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("identity record %q: %w", path, err)
	}
	return nil
}
