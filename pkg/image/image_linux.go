package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
)

// ToolTimeout bounds each e2fsprogs run: hooks must not wait forever, and
// LXC waits on a hook with no timeout of its own.
var ToolTimeout = 10 * time.Minute

// CreateOptions say how a new image is made.
type CreateOptions struct {
	Size        int64
	Preallocate bool
}

// Create makes a new ext4 image at path: under a temporary name in the same
// directory, sized (sparse, or reserved with fallocate), formatted, synced,
// and only then linked to path without replacing anything there. If path
// appeared meanwhile (another start won the race), the new image is thrown
// away and ErrExist returned.
func Create(path string, o CreateOptions) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".creating."+strconv.Itoa(os.Getpid()))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp) // our own temporary file, never the user's image
		}
	}()
	if o.Preallocate {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, o.Size); err != nil {
			return fmt.Errorf("creating image %q: reserving %s with fallocate: %w", path, Human(o.Size), err)
		}
	} else if err := f.Truncate(o.Size); err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	// nodiscard: a discard would punch the holes fallocate just filled.
	// -m 0: no blocks reserved for root, so df inside shows the whole cap.
	if out, err := run("mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", "-E", "nodiscard", "-L", "lxc-layer", tmp); err != nil {
		return fmt.Errorf("creating image %q: mke2fs: %v: %s", path, err, out)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			os.Remove(tmp)
			ok = true
			return os.ErrExist
		}
		return fmt.Errorf("creating image %q: rename: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the new name survives a crash
		d.Close()
	}
	return nil
}

// Fsck runs e2fsck in preen mode (full check when force), which repairs
// only what is safe to repair unattended. Exit codes 0-2 mean clean or
// repaired; anything else is refused with e2fsck's own verdict.
func Fsck(path string, force bool) (repaired bool, err error) {
	args := []string{"-p"}
	if force {
		args = append(args, "-f")
	}
	out, err := run("e2fsck", append(args, path)...)
	code := execs.ExitCode(err)
	switch {
	case code == 0:
		return false, nil
	case code == 1 || code == 2:
		return true, nil
	case code < 0:
		return false, fmt.Errorf("e2fsck %q: %v", path, err)
	}
	return false, fmt.Errorf("image %q has errors e2fsck -p cannot repair safely (exit %d): %s; repair it by hand with e2fsck -f %s", path, code, lastLine(out), path)
}

// Grow extends the image file to size (reserving the space with fallocate
// when preallocate) and grows the filesystem to fill it, offline.
func Grow(f *os.File, size int64, preallocate bool) error {
	path := f.Name()
	if preallocate {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			return fmt.Errorf("growing image %q: fallocate: %w", path, err)
		}
	} else if err := f.Truncate(size); err != nil {
		return fmt.Errorf("growing image %q: %w", path, err)
	}
	// resize2fs insists on a freshly checked filesystem.
	if _, err := Fsck(path, true); err != nil {
		return err
	}
	if out, err := run("resize2fs", path); err != nil {
		return fmt.Errorf("growing image %q: resize2fs: %v: %s", path, err, lastLine(out))
	}
	return nil
}

// run execs an e2fsprogs tool with argv (no shell), bounded by ToolTimeout.
func run(tool string, args ...string) (string, error) {
	return execs.Run(ToolTimeout, "install e2fsprogs", tool, args...)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	// e2fsck's verdict is its last lines; keep the log line short.
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// Usage reports the image's apparent size and the bytes it occupies on the
// host, and the free space left on the host filesystem.
func Usage(f *os.File) (apparent, allocated, hostFree int64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, 0, err
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return 0, 0, 0, err
	}
	return st.Size, st.Blocks * 512, int64(fs.Bavail) * int64(fs.Bsize), nil
}
