package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/clone"
	"github.com/lxc-hooks/lxc-hooks/pkg/freeze"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
)

// The copy of a running container (copy, and the clone hook for
// lxc-copy --allowrunning): how it is held still (package freeze), what
// the copy says it cost, and what a running container's directory holds
// that a copy must not take (its root, attached on its rootfs directory).

// CopyResult is what copy --json prints; its fields are documented in the
// README (fields are only ever added).
type CopyResult struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Directory   string `json:"directory"`
	// SourceState is SRC's state when the copy began: STOPPED, RUNNING or
	// FROZEN (lxc-freeze).
	SourceState string `json:"source_state"`
	// Consistency is "stopped" (SRC was stopped), "frozen" (copied while
	// frozen) or "crash-consistent" (--no-freeze).
	Consistency string `json:"consistency"`
	// Freeze is what was frozen: "filesystem", "cgroup-v1", "cgroup-v2",
	// or "" (none); FrozenSeconds how long the container's writes (image)
	// or processes (directory) waited; FreezeWasThere that it was frozen
	// before (lxc-freeze) and was left so.
	Freeze         string  `json:"freeze"`
	FrozenSeconds  float64 `json:"frozen_seconds"`
	FreezeWasThere bool    `json:"freeze_was_there"`
	// Layer is the copy's writable layer, null when SRC had none yet.
	Layer       *CopyLayer `json:"layer"`
	TookSeconds float64    `json:"took_seconds"`
	// Summary is the human line's details.
	Summary string `json:"summary"`
}

// CopyLayer is the copied layer.
type CopyLayer struct {
	Kind string `json:"kind"` // "image" or "directory"
	Path string `json:"path"`
	// Method is "reflink", "sparse copy", "preallocated copy", "reflink,
	// preallocated" (image) or "cp -a" (directory).
	Method         string `json:"method"`
	AllocatedBytes int64  `json:"allocated_bytes"`
	// Fsck is "clean" for an image (e2fsck -fn passed), "" for a
	// directory; OrphansReleased counts the inodes deleted while open in
	// the running source that e2fsck -p released in the copy first, as
	// the copy's first mount would; JournalReplayed is true for a
	// --no-freeze copy whose journal e2fsck -p replayed.
	Fsck            string `json:"fsck"`
	OrphansReleased int    `json:"orphans_released"`
	JournalReplayed bool   `json:"journal_replayed"`
}

// liveOf says how a source in state st (init pid) is copied: nil for a
// stopped one; refused while it starts or stops.
func liveOf(src *container, st string, pid int) (*liveSource, error) {
	switch st {
	case "STOPPED":
		return nil, nil
	case "RUNNING", "FROZEN":
		if pid <= 0 {
			return nil, fmt.Errorf("container %q is %s but LXC names no init process; nothing was copied", src.Name, st)
		}
		return &liveSource{State: st, PID: pid, MaxFreeze: freeze.DefaultMax}, nil
	}
	return nil, fmt.Errorf("container %q is %s: copy it once it is running or stopped; nothing was copied", src.Name, st)
}

// liveSource is a running (or lxc-frozen) source and how to hold it still.
type liveSource struct {
	State     string // RUNNING or FROZEN
	PID       int    // its init, as lxc-info named it
	NoFreeze  bool
	MaxFreeze time.Duration
}

// interruption catches Ctrl-C, SIGTERM and SIGHUP for a copy: the first
// one cancels the context.
type interruption struct {
	sigs chan os.Signal
	mu   sync.Mutex
	got  os.Signal
	done chan struct{}
}

func interruptible() (context.Context, *interruption) {
	ctx, cancel := context.WithCancel(context.Background())
	in := &interruption{sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(in.sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	go func() {
		select {
		case s := <-in.sigs:
			in.mu.Lock()
			in.got = s
			in.mu.Unlock()
			cancel()
		case <-in.done:
			cancel()
		}
	}()
	return ctx, in
}

// signal is the signal caught, or nil.
func (in *interruption) signal() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.got
}

func (in *interruption) stop() {
	signal.Stop(in.sigs)
	close(in.done)
}

// text is the summary for the copy command's line and the clone hook's.
func (r *copyReport) text() string {
	if r == nil || len(r.summary) == 0 {
		return ""
	}
	return ": " + strings.Join(r.summary, ", ")
}

// thawNote says, for an interrupted copy, that the source was thawed.
func (r *copyReport) thawNote() string {
	if r == nil || !r.froze || r.freeze.Already {
		return ""
	}
	return fmt.Sprintf("; the container was thawed after %s frozen", roundFrozen(r.freeze.Frozen))
}

func (r *copyReport) result() CopyResult {
	c := CopyResult{Consistency: r.consistency, Layer: r.layer, Summary: strings.TrimPrefix(r.text(), ": ")}
	if r.froze {
		c.Freeze = map[freeze.Kind]string{freeze.Filesystem: "filesystem", freeze.CgroupV1: "cgroup-v1", freeze.CgroupV2: "cgroup-v2"}[r.freeze.Kind]
		c.FrozenSeconds = r.freeze.Frozen.Seconds()
		c.FreezeWasThere = r.freeze.Already
	}
	return c
}

func roundFrozen(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// freezeContainer freezes the running container of j with the cgroup
// freezer, found through its init.
func freezeContainer(j copyJob) (*freeze.Freeze, error) {
	target, err := freeze.CgroupOf(j.Live.PID)
	if err != nil {
		return nil, fmt.Errorf("freezing the running container %s: %w; nothing was copied", j.Src.Name, err)
	}
	defer target.Close()
	// The PID came from lxc-info a moment ago: the container's init still
	// has it (and CgroupOf read that live process's cgroups).
	if st, pid := j.Src.info(); pid != j.Live.PID || (st != "RUNNING" && st != "FROZEN") {
		return nil, fmt.Errorf("container %s changed state while the copy began (now %s); nothing was copied: copy it again", j.Src.Name, st)
	}
	fr, err := freeze.Start(target, freeze.Options{Max: j.Live.MaxFreeze, Name: j.Src.Name})
	if err != nil {
		return nil, fmt.Errorf("freezing the running container %s (%s): %w; nothing was copied", j.Src.Name, target.Kind.Describe(), err)
	}
	return fr, nil
}

// syncLayer writes the dirty data of the filesystem that holds dir.
func syncLayer(dir string) {
	d, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer d.Close()
	unix.Syncfs(int(d.Fd()))
}

// whileFrozen runs copy with fr held (nil: no freeze) and lifts the freeze
// first, whatever happens: at once when ctx is done (Ctrl-C), before the
// copy stops; when copy returns; and when the freeze ends by itself (its
// limit), which stops the copy. An error from the freeze (it did not hold
// to the end) fails the copy.
func whileFrozen(ctx context.Context, fr *freeze.Freeze, copy func(context.Context) error) (freeze.Result, error) {
	if fr == nil {
		return freeze.Result{}, copy(ctx)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			fr.Thaw() // the container first
		case <-fr.Done():
		case <-finished:
			return
		}
		cancel()
	}()
	killpoint.At("copy:frozen") // test-only
	err := copy(cctx)
	close(finished)
	<-watched
	res, ferr := fr.Thaw()
	if ferr != nil && (err == nil || ctx.Err() == nil) {
		if errors.Is(ferr, freeze.ErrLimit) {
			return res, fmt.Errorf("%w (frozen %s, see --max-freeze): copy again with a longer --max-freeze, or stop the container first", ferr, roundFrozen(res.Frozen))
		}
		return res, ferr
	}
	return res, err
}

// noteFreeze records a freeze (or the lack of one) in rep.
func noteFreeze(j copyJob, fr *freeze.Freeze, res freeze.Result, rep *copyReport) {
	if j.Live == nil {
		return
	}
	rep.consistency = "crash-consistent"
	if fr != nil {
		rep.froze, rep.freeze, rep.consistency = true, res, "frozen"
	}
}

// noteConsistency says how the copy of a running source was taken.
func noteConsistency(j copyJob, rep *copyReport) {
	switch {
	case j.Live == nil:
	case !rep.froze:
		rep.summary = append(rep.summary, "taken from the running container without a freeze (--no-freeze): crash-consistent at best, as a disk after a power cut (what the container had not written out is missing, what it wrote during the copy may be in it in part)")
	case rep.freeze.Already:
		rep.summary = append(rep.summary, fmt.Sprintf("taken while the container was frozen already (%s), left frozen", rep.freeze.Kind.Describe()))
	default:
		what := "its filesystem frozen (writes waited, reads went on)"
		if rep.freeze.Kind != freeze.Filesystem {
			what = "the container frozen (" + rep.freeze.Kind.Describe() + ")"
		}
		rep.summary = append(rep.summary, fmt.Sprintf("consistent: taken with %s for %s", what, roundFrozen(rep.freeze.Frozen)))
	}
}

// openAttached opens the image at path of the running container name
// (checked as a start checks it) and its loop device: exactly one device
// bound to this very file (device and inode), opened, and proven still
// bound to it with the same disk sequence number once open (the open
// device keeps that binding: its number cannot come to name another).
func openAttached(path, name string) (*os.File, *loop.Device, error) {
	f, err := image.Open(path, os.O_RDONLY)
	if err != nil {
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil, err
	}
	devs, err := loop.FindByBacking(uint64(st.Dev), st.Ino)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if len(devs) != 1 {
		f.Close()
		return nil, nil, fmt.Errorf("container %s is running but its image %s is bound to %d loop devices, not one; nothing was copied (see status %s)", name, path, len(devs), name)
	}
	dev, err := loop.Open(devs[0].Number)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	now, err := dev.Status()
	if err != nil || now.BackingDev != uint64(st.Dev) || now.BackingIno != st.Ino || now.Diskseq != devs[0].Diskseq {
		dev.Close()
		f.Close()
		return nil, nil, fmt.Errorf("%s is no longer the loop device of %s (the container stopped or restarted meanwhile); nothing was copied: copy it again", dev.Path, path)
	}
	return f, dev, nil
}

// isMountpoint reports whether something is mounted on the directory p
// (its device is not its parent's).
func isMountpoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev != parent.Dev
}

// statUnder stats dir/name as it is under whatever is mounted on it:
// through a clone of dir's mount alone (open_tree without AT_RECURSIVE, a
// detached mount gone when closed), which carries no mount stacked on its
// entries.
func statUnder(dir, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return st, &os.PathError{Op: "open_tree", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "stat", Path: filepath.Join(dir, name), Err: err}
	}
	return st, nil
}

// emptyDirLike makes dst (new, or an existing directory of LXC's copy,
// emptied) a directory with the owner and mode that srcDir/name has under
// what is mounted on it.
func emptyDirLike(srcDir, name, dst string) error {
	st, err := statUnder(srcDir, name)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "chown", Path: dst, Err: err}
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: dst, Err: err}
	}
	return nil
}

// emptyCopiedRoot undoes what lxc-copy --allowrunning does to a running
// unprivileged container's copy: its rsync copies what is mounted on the
// source's rootfs directory, i.e. the container's whole root (template and
// layer, attached there on the host while it runs, and copied unfrozen)
// into the copy's. The copy's rootfs directory, LXC's own of a moment
// ago, is emptied (nothing mounted below it), and gets the owner and mode
// of the source's under its mount. It reports whether it did anything.
func emptyCopiedRoot(srcRootfs, dstRootfs string) (bool, error) {
	if !isMountpoint(srcRootfs) {
		return false, nil // nothing attached: LXC copied the directory itself
	}
	var st unix.Stat_t
	if err := unix.Lstat(dstRootfs, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || isMountpoint(dstRootfs) {
		return false, nil
	}
	ents, err := os.ReadDir(dstRootfs)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		// RemoveFresh refuses a mount below; RemoveAll follows no link.
		if err := clone.RemoveFresh(filepath.Join(dstRootfs, e.Name())); err != nil {
			return true, err
		}
	}
	return len(ents) > 0, emptyDirLike(filepath.Dir(srcRootfs), filepath.Base(srcRootfs), dstRootfs)
}
