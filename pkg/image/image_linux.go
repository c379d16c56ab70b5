package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// ToolTimeout bounds mke2fs, which works on a temporary file and may be
// killed at any point. e2fsck and resize2fs are never killed: interrupted,
// they can leave the filesystem worse than they found it, and an image
// that needs an hour to check could otherwise never start. Their progress
// is logged instead (OnSlow), and they hold the image's lock for as long as
// they run, even if their hook is killed.
var ToolTimeout = 10 * time.Minute

// OnSlow, if set, is told every minute that a tool still runs on an image.
var OnSlow func(tool, image string, elapsed time.Duration)

// CreateOptions say how a new image is made.
type CreateOptions struct {
	Size        int64
	Preallocate bool
	// Progress shows the steps (fallocate, mke2fs's phases) on a
	// terminal; nil shows nothing (mke2fs -q).
	Progress *progress.Meter
}

// ErrCreating is returned by Create while another process is creating
// the same image.
var ErrCreating = errors.New("another process is creating it right now")

// TempName is the temporary name an image is created under, beside it.
func TempName(path string) string {
	return filepath.Join(filepath.Dir(path), tempBase(filepath.Base(path)))
}

func tempBase(name string) string { return "." + name + ".creating" }

// Open opens the layer image at path with flag (O_RDWR, O_RDONLY) for host
// root: it and every directory above it must be root's and writable by
// root alone (package trust), it must be a regular file with one name
// (OpenIn). The name is resolved once; the tools that work on the image
// get the open file (ToolPath).
func Open(path string, flag int) (*os.File, error) {
	d, name, err := trust.Parent(path, "--image")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return OpenIn(d, name, flag)
}

// OpenIn opens the image name in the checked directory d (trust.Parent),
// refusing a link, a file that is not root's or is writable by others, and
// a file with more than one name: another name may sit in a directory
// someone else can write (a sticky /tmp), or be another file's, which a
// start would then check, grow and write.
func OpenIn(d *trust.Dir, name string, flag int) (*os.File, error) {
	f, st, err := d.OpenChecked(name, flag)
	if err != nil {
		return nil, err
	}
	if st.Nlink > 1 {
		f.Close()
		return nil, &LinksError{Path: d.Join(name), Links: uint64(st.Nlink)}
	}
	return f, nil
}

// LinksError is an image refused for having more than one name.
type LinksError struct {
	Path  string
	Links uint64
}

func (e *LinksError) Error() string {
	return fmt.Sprintf("image %q has %d names (hardlinks): the hooks use an image with one name only, as a start writes it and another name may belong to someone else; remove the other links (find / -xdev -samefile %s) or copy the image", e.Path, e.Links, e.Path)
}

// Create makes a new ext4 image at path (see CreateIn), in a directory
// checked by trust.Parent.
func Create(path string, o CreateOptions) error {
	d, name, err := trust.Parent(path, "--image")
	if err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	defer d.Close()
	return CreateIn(d, name, o)
}

// CreateIn makes a new ext4 image name in the checked directory d: under
// a temporary name there (TempName), sized (sparse, or reserved with
// fallocate), formatted, synced, and only then linked to name without
// replacing anything there. If name appeared meanwhile (another start won
// the race), ErrExist is returned. Every step works on d's fd and the
// temporary file's: mke2fs gets the open file, not its name.
//
// Creators are serialized by an flock on the temporary file, held (also by
// mke2fs, which inherits it) until the rename. The name carries no PID: a
// hook's PID is the one in the container's PID namespace, the same for
// every container. A temporary file whose lock is free was left by a
// creator that died (a SIGKILLed hook): the lock proves it, and the file is
// reused from zero, so its space does not leak and the start is not
// blocked. ErrCreating while the lock is held. A temporary file that is a
// link, is not root's, or has a second name (a hardlink to another file,
// which the reuse would truncate) is refused and left alone.
func CreateIn(d *trust.Dir, name string, o CreateOptions) error {
	path := d.Join(name)
	tmp := tempBase(name)
	f, err := lockTemp(d, tmp)
	if err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			// Our own locked temporary file, never the user's image:
			// removed while the lock is held.
			d.Remove(tmp)
		}
		f.Close()
	}()
	m := o.Progress
	if o.Preallocate {
		// Fast where the filesystem allocates extents without writing
		// them (ext4, xfs, btrfs); a step of its own where it is not.
		m.Step("reserving " + Human(o.Size) + " on the host (fallocate)")
		err := unix.Fallocate(int(f.Fd()), 0, 0, o.Size)
		m.End(err)
		if err != nil {
			return fmt.Errorf("creating image %q: reserving %s with fallocate: %w", path, Human(o.Size), err)
		}
	} else if err := f.Truncate(o.Size); err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	// nodiscard: a discard would punch the holes fallocate just filled.
	// -m 0: no blocks reserved for root, so df inside shows the whole cap.
	// mke2fs holds the lock too (fd 3, which it also formats): a mke2fs
	// that outlived its hook keeps other creators off until it is gone.
	// Without -q mke2fs names each phase and counts its groups.
	ro := execs.Options{Timeout: ToolTimeout, Hint: "install e2fsprogs", Files: []*os.File{f}}
	args := []string{"-F", "-t", "ext4", "-m", "0", "-E", "nodiscard", "-L", "lxc-layer", ToolPath}
	if m == nil {
		args = append([]string{"-q"}, args...)
	} else {
		ro.Output = progress.Mke2fs(m)
	}
	m.Step("formatting the image (mke2fs)")
	out, err := execs.RunWith(ro, "mke2fs", args...)
	m.End(err)
	if err != nil {
		if m != nil {
			out = lastLine(out) // its words after its phases
		}
		return fmt.Errorf("creating image %q: mke2fs: %v: %s", path, err, toolOutput(out, path))
	}
	killpoint.At("pre-mount:creating-image")
	if err := f.Sync(); err != nil {
		return fmt.Errorf("creating image %q: %w", path, err)
	}
	if err := unix.Renameat2(d.Fd(), tmp, d.Fd(), name, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return os.ErrExist // the deferred Remove throws ours away
		}
		return fmt.Errorf("creating image %q: rename: %w", path, err)
	}
	ok = true
	d.File().Sync() // the new name survives a crash
	return nil
}

// lockTemp opens (creating) the temporary file in d, never through a link,
// and takes its lock. A file already there with a free lock is a dead
// creator's: truncated and reused, once it is proven to be one: a regular
// file of this user's with no other name. The name is checked to still be
// the locked file after the lock is taken: a creator that held it renamed
// it to the image, and that file must never be truncated.
func lockTemp(d *trust.Dir, tmp string) (*os.File, error) {
	path := d.Join(tmp)
	for attempt := 0; attempt < 10; attempt++ {
		f, err := d.Open(tmp, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			// Another user's file in a sticky directory (protected_regular)
			// answers EACCES: say whose it is.
			if st, serr := d.Lstat(tmp); serr == nil && int(st.Uid) != os.Geteuid() && errors.Is(err, unix.EACCES) {
				return nil, fmt.Errorf("%s belongs to uid %d, not to root: someone else made it; refused, left as it is (remove it if it is no creation's)", path, st.Uid)
			}
			return nil, err
		}
		var held unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, err
		}
		switch {
		case held.Mode&unix.S_IFMT != unix.S_IFREG:
			f.Close()
			return nil, fmt.Errorf("%s is not a regular file: refused, left as it is", path)
		case int(held.Uid) != os.Geteuid():
			f.Close()
			return nil, fmt.Errorf("%s belongs to uid %d, not to root: someone else made it; refused, left as it is (remove it if it is no creation's)", path, held.Uid)
		case held.Nlink > 1:
			f.Close()
			return nil, fmt.Errorf("%s has %d names (a hardlink to another file, which reusing it would truncate): refused, left as it is; remove that name", path, held.Nlink)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w (%s is locked); a second start of one image is refused anyway", ErrCreating, path)
			}
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		if named, err := d.Lstat(tmp); err == nil && held.Dev == named.Dev && held.Ino == named.Ino {
			if held.Size > 0 || held.Blocks > 0 {
				if err := f.Truncate(0); err != nil {
					f.Close()
					return nil, fmt.Errorf("reusing %s, left by a creator that died: %w", path, err)
				}
			}
			return f, nil
		}
		f.Close() // renamed (or removed) by the creator we waited for: again
	}
	return nil, fmt.Errorf("%s keeps changing under its lock", path)
}

// ToolPath is how an e2fsprogs tool names the image: the file the hook
// opened and checked, passed to it as fd 3 (execs.Options.Files), which
// the tool reopens through /proc. The image's name is never looked up
// again, so nothing swapped in meanwhile is formatted, checked or grown.
const ToolPath = "/proc/self/fd/3"

// toolOutput puts the image's name back into a tool's words.
func toolOutput(out, path string) string { return strings.ReplaceAll(out, ToolPath, path) }

// Fsck runs e2fsck in preen mode (full check when force) on the image f,
// whose lock the caller holds, which repairs only what is safe to repair
// unattended. Exit codes 0-2 mean clean or repaired; anything else is
// refused with e2fsck's own verdict.
func Fsck(f *os.File, force bool) (repaired bool, err error) {
	return FsckShowing(f, force, nil)
}

// FsckShowing is Fsck with e2fsck's passes shown on m (nil: none).
func FsckShowing(f *os.File, force bool, m *progress.Meter) (repaired bool, err error) {
	path := f.Name()
	args := []string{"-p"}
	var o execs.Options
	if m != nil {
		// -C 1: a completion line per step on its stdout, a terminal of
		// its own (execs.Options.Terminal): if this process dies, the
		// check goes on (its writes to the pty fail with EIO; a pipe would
		// kill it with SIGPIPE).
		args = append(args, "-C", "1")
		o.Terminal, o.Output = true, progress.E2fsck(m)
	}
	if force {
		args = append(args, "-f")
	}
	m.Step("checking the image (e2fsck)")
	out, err := runOn(f, o, "e2fsck", append(args, ToolPath)...)
	m.End(err)
	out = dropProgressLines(out)
	code := execs.ExitCode(err)
	switch {
	case code == 0:
		return false, nil
	case code == 1 || code == 2:
		return true, nil
	case code < 0:
		return false, fmt.Errorf("e2fsck %q: %v", path, err)
	}
	return false, fmt.Errorf("image %q has errors e2fsck -p cannot repair safely (exit %d): %s; repair it by hand with e2fsck -f %s", path, code, lastLine(toolOutput(out, path)), path)
}

// FsckReadOnly runs e2fsck -fn on the image f (a copy just made): it
// changes nothing and answers whether the filesystem is clean.
func FsckReadOnly(f *os.File) (string, error) {
	return FsckReadOnlyShowing(f, nil)
}

// FsckReadOnlyShowing is FsckReadOnly with e2fsck's passes shown on m
// (nil: none).
func FsckReadOnlyShowing(f *os.File, m *progress.Meter) (string, error) {
	o := execs.Options{Timeout: ToolTimeout, Hint: "install e2fsprogs", Files: []*os.File{f}}
	args := []string{"-fn", ToolPath}
	if m != nil {
		args = []string{"-fn", "-C", "1", ToolPath}
		o.Terminal, o.Output = true, progress.E2fsck(m)
	}
	out, err := execs.RunWith(o, "e2fsck", args...)
	return toolOutput(dropProgressLines(out), f.Name()), err
}

// Preen runs e2fsck -p on the image f, a copy just made (never an image a
// container uses): it replays the journal, releases the orphan inodes
// (files deleted while open) and makes the fixes e2fsck calls safe, as the
// first mount of the copy would. It returns e2fsck's output and its exit
// status: 0 clean, 1 or 2 fixed, 4 and above not safely fixable.
func Preen(f *os.File) (string, int, error) {
	out, err := execs.RunWith(execs.Options{Timeout: ToolTimeout, Hint: "install e2fsprogs", Files: []*os.File{f}}, "e2fsck", "-p", ToolPath)
	code := execs.ExitCode(err)
	if code < 0 {
		return toolOutput(out, f.Name()), code, err
	}
	return toolOutput(out, f.Name()), code, nil
}

// Grow extends the image file to size (reserving the space with fallocate
// when preallocate) and grows the filesystem to fill it, offline.
func Grow(f *os.File, size int64, preallocate bool) error {
	return GrowShowing(f, size, preallocate, nil)
}

// GrowShowing is Grow with its steps shown on m (nil: none): the
// reservation, e2fsck's passes, resize2fs's.
func GrowShowing(f *os.File, size int64, preallocate bool, m *progress.Meter) error {
	path := f.Name()
	if preallocate {
		m.Step("reserving " + Human(size) + " on the host (fallocate)")
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		m.End(err)
		if err != nil {
			return fmt.Errorf("growing image %q: fallocate: %w", path, err)
		}
	} else if err := f.Truncate(size); err != nil {
		return fmt.Errorf("growing image %q: %w", path, err)
	}
	// resize2fs insists on a freshly checked filesystem.
	if _, err := FsckShowing(f, true, m); err != nil {
		return err
	}
	var o execs.Options
	args := []string{ToolPath}
	if m != nil {
		// -p: a bar per pass that moves data (growing into room the
		// group descriptors kept for it needs none).
		args = []string{"-p", ToolPath}
		o.Terminal, o.Output = true, progress.Resize2fs(m)
	}
	m.Step("growing the filesystem (resize2fs)")
	out, err := runOn(f, o, "resize2fs", args...)
	m.End(err)
	if err != nil {
		return fmt.Errorf("growing image %q: resize2fs: %v: %s", path, err, lastLine(toolOutput(dropProgressLines(out), path)))
	}
	return nil
}

// dropProgressLines removes the progress a tool drew (e2fsck's -C lines,
// resize2fs's bars) from its output, leaving its words for messages.
func dropProgressLines(out string) string {
	var keep []string
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		f := strings.Fields(l)
		isPass := len(f) >= 3 && len(f[0]) == 1 && f[0] >= "1" && f[0] <= "5" && isDigits(f[1]) && isDigits(f[2])
		if isPass || strings.ContainsRune(l, '\b') || strings.HasPrefix(l, "Begin pass ") {
			continue
		}
		keep = append(keep, strings.TrimRight(l, "\r"))
	}
	return strings.Join(keep, "\n")
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// runOn execs an e2fsprogs tool that changes the image f in place, with
// argv (no shell): it inherits f as fd 3 (ToolPath), so the lock on it
// lives as long as the tool; it is neither timed out nor killed with its hook (see ToolTimeout).
func runOn(f *os.File, o execs.Options, tool string, args ...string) (string, error) {
	o.Hint, o.Files, o.KeepOnParentDeath = "install e2fsprogs", []*os.File{f}, true
	if OnSlow != nil {
		o.Progress = func(d time.Duration) { OnSlow(tool, f.Name(), d) }
	}
	return execs.RunWith(o, tool, args...)
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
