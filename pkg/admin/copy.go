package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/clone"
	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
	"github.com/lxc-hooks/lxc-hooks/pkg/freeze"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/loopimg"
	"github.com/lxc-hooks/lxc-hooks/pkg/lxclog"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

const copyAbout = `Makes DST a complete, independent copy of the container SRC: its config
rewritten for DST (lxc.uts.name, and every path that pointed into SRC's
directory: rootfs, hook arguments such as --image, --upper and --config, log
files), the files of SRC's directory, and the writable layer. The template
is shared, not copied. An image layer keeps its holes (a reflink where the
host filesystem has it, else only its data is copied) and is checked with
e2fsck -fn; a directory layer keeps owners, modes, xattrs (overlayfs's
opaque directories and redirects), whiteouts, hardlinks, holes and times. A
layer outside SRC's directory is copied into DST's directory (the default
place). DST must not exist.
A running SRC is copied consistently: an image layer's filesystem is frozen
(FIFREEZE: writes inside wait, reads go on), a directory layer's container
is frozen (cgroup freezer), for as long as the layer is copied and never
longer than --max-freeze; the time frozen is printed. The freeze is held by
a watchdog process that lifts it when the copy ends, fails, is interrupted
or killed. --no-freeze copies without it: crash-consistent at best.
lxc-copy (--allowrunning for a running SRC) and lxc-snapshot (of a stopped
SRC: LXC refuses a running one) do the
same through the lxc.hook.clone line that init writes.`

func cmdCopy(k Kind, args []string, stdout, stderr io.Writer) error {
	fs := flags(k, "copy", "SRC DST [-P LXCPATH] [--no-freeze] [--max-freeze DURATION] [--json]", copyAbout, stdout)
	lxcpath := fs.String("P", "", "`LXCPATH` of both containers (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	noFreeze := fs.Bool("no-freeze", false, "copy a running SRC without freezing it: the copy is crash-consistent at best (as a disk after a power cut)")
	maxFreeze := fs.Duration("max-freeze", freeze.DefaultMax, "the longest a running SRC stays frozen, as a `DURATION` (90s, 5m, 1h): a copy that takes longer fails, and SRC is thawed then")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{errors.New("give SRC and DST (see --help)")}
	}
	if *maxFreeze <= 0 {
		return usageError{fmt.Errorf("--max-freeze %s: give a positive duration (e.g. 30s, 5m)", *maxFreeze)}
	}
	srcName, dstName := pos[0], pos[1]
	if dstName == "" || strings.ContainsAny(dstName, "/\n \t") || dstName == "." || dstName == ".." {
		return usageError{fmt.Errorf("container name %q is not valid", dstName)}
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	src, err := loadContainer(*lxcpath, srcName)
	if err != nil {
		return err
	}
	if err := runner.CheckConfig(src.Hook.Config, src.Config, k.Program); err != nil {
		return fmt.Errorf("container %q cannot be copied: %v", srcName, err)
	}
	st, pid := src.info()
	live, err := liveOf(src, st, pid)
	if err != nil {
		return err
	}
	if live != nil {
		live.NoFreeze, live.MaxFreeze = *noFreeze, *maxFreeze
	}
	dstDir := filepath.Join(*lxcpath, dstName)
	if _, err := os.Lstat(dstDir); err == nil {
		if kept := removeDeadCopy(dstDir, stderr); kept != "" {
			return fmt.Errorf("container %q already exists (%s%s): nothing was copied", dstName, dstDir, kept)
		}
	}
	if err := os.Mkdir(dstDir, 0o770); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("container %q already exists (%s): nothing was copied", dstName, dstDir)
		}
		return err
	}
	// The container's root must reach DST's rootfs as it reaches SRC's
	// (an unprivileged container's root is not host root): the same owner,
	// group and mode.
	if err := sameOwnerAndMode(src.Dir, dstDir); err != nil {
		os.Remove(dstDir)
		return err
	}
	marker, err := markCopy(dstDir)
	if err != nil {
		os.Remove(dstDir)
		return err
	}
	defer marker.Close()
	// Ctrl-C, SIGTERM or a hangup would otherwise end the copy where it
	// stands, leaving DST's partial directory (a layer's worth of data);
	// caught, the copy stops (a running SRC is thawed first, at once) and
	// removes it.
	ctx, interrupted := interruptible()
	defer interrupted.stop()
	t0 := time.Now()
	rep, err := copyContainer(copyJob{
		Src: src, DstConfig: filepath.Join(dstDir, "config"), DstName: dstName,
		Command: true, Progress: progress.New(stdout), Live: live, Ctx: ctx,
	})
	if s := interrupted.signal(); s != nil {
		err = fmt.Errorf("interrupted (%v)%s", s, rep.thawNote())
	}
	if err != nil {
		// dstDir is ours, made above; nothing is mounted in it.
		if rmErr := clone.RemoveFresh(dstDir); rmErr != nil {
			return fmt.Errorf("%v (the partial copy %s was left: %v)", err, dstDir, rmErr)
		}
		return fmt.Errorf("%v; nothing was left behind", err)
	}
	// The config is in place: from here DST is a container, not a partial
	// copy.
	os.Remove(marker.Name())
	took := time.Since(t0)
	if *asJSON {
		r := rep.result()
		r.Source, r.Destination, r.Directory, r.SourceState, r.TookSeconds = srcName, dstName, dstDir, st, took.Seconds()
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(stdout, "Container %s copied to %s (%s) in %s%s; start it with: lxc-start -n %s", srcName, dstName, dstDir, took.Round(time.Millisecond), rep.text(), dstName)
	if *lxcpath != defaultLXCPath() {
		fmt.Fprintf(stdout, " -P %s", *lxcpath)
	}
	fmt.Fprintln(stdout)
	return nil
}

// copyMarker is the file in DST's directory while the copy command fills
// it, locked (flock) by the copy for as long as it runs: a directory with
// it and no config, its lock free, is what a killed copy (SIGKILL, a
// crash) left, and a new copy to the same name removes it instead of
// refusing DST forever ("already exists", while lxc-ls shows no such
// container and lxc-destroy knows none). A leading dot keeps it out of
// copies of DST.
const copyMarker = ".lxc-hook-copy-in-progress"

// markCopy creates and locks the marker in the new directory dir.
func markCopy(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, copyMarker), os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return f, nil
}

// removeDeadCopy removes dir if it is a partial copy whose copy command is
// gone (no config, the marker's lock free). Otherwise it returns why dir
// was kept, "" or a note for the "already exists" refusal.
func removeDeadCopy(dir string, stderr io.Writer) (kept string) {
	if _, err := os.Lstat(filepath.Join(dir, "config")); err == nil {
		return ""
	}
	f, err := os.OpenFile(filepath.Join(dir, copyMarker), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return "; a copy to it is under way"
	}
	if err := clone.RemoveFresh(dir); err != nil {
		return fmt.Sprintf("; a partial copy left by an interrupted copy, which could not be removed: %v", err)
	}
	fmt.Fprintf(stderr, "removed %s, a partial copy left by an interrupted copy\n", dir)
	return ""
}

// copyJob is one copy of a container: by the copy command (Command: it
// writes DST's directory and config), or by the clone hook, after LXC
// wrote DST's config and rootfs directory (lxc-copy, lxc-snapshot).
type copyJob struct {
	Src       *container
	DstConfig string
	DstName   string
	Command   bool
	// Progress shows the copy's steps on a terminal (nil: none).
	Progress *progress.Meter
	// Live is set when Src runs (or is lxc-frozen): its layer is copied
	// while it is frozen (or, with NoFreeze, as it is).
	Live *liveSource
	// Ctx stops the copy (Ctrl-C): a freeze is lifted first, at once.
	Ctx context.Context
}

// bytes is where the layer copy reports its bytes: nil without a
// terminal, so that nothing is counted (a directory's bytes are summed by
// a walk of its tree first).
func (j copyJob) bytes() clone.Progress {
	if j.Progress == nil {
		return nil
	}
	return j.Progress.Bytes
}

// layerPath is the writable layer a hook line uses ("" for an ephemeral
// one: nothing to copy) and whether it is an image.
func (h hookLine) layerPath() (string, bool) {
	if h.Ephemeral {
		return "", false
	}
	if h.Image != "" {
		return h.Image, true
	}
	return h.Upper, false
}

// copyReport is what a copy did, for the user and for --json.
type copyReport struct {
	summary     []string
	layer       *CopyLayer
	consistency string // "stopped", "frozen", "crash-consistent"
	froze       bool   // a freeze was taken (and has ended)
	freeze      freeze.Result
}

// copyContainer copies Src's layer (and, for the command, its directory's
// other files) and writes DST's config. It returns what it did (also on
// failure: whether a freeze was taken and lifted).
func copyContainer(j copyJob) (*copyReport, error) {
	rep := &copyReport{consistency: "stopped"}
	if j.Live != nil {
		rep.consistency = "" // until a layer is copied (an ephemeral one is not)
	}
	if j.Ctx == nil {
		j.Ctx = context.Background()
	}
	srcDir, dstDir := j.Src.Dir, filepath.Dir(j.DstConfig)
	text, err := os.ReadFile(j.Src.Config)
	if !j.Command {
		// LXC already wrote DST's config (uts name, rootfs, MAC addresses).
		text, err = os.ReadFile(j.DstConfig)
	}
	if err != nil {
		return rep, err
	}
	// The copy's hook lines run as root too: a binary a user can replace
	// is refused before anything is copied (and the lines written are
	// checked again below).
	if err := checkHookBinaries(string(text)); err != nil {
		return rep, fmt.Errorf("%v; the copy's config would name it and LXC would run it as root: %s, and name it on %s's hook lines first", err, trust.InstallFix, j.Src.Name)
	}
	rw := rewrite{SrcDir: srcDir, DstDir: dstDir, KeepRootfs: !j.Command, SrcName: j.Src.Name, DstName: j.DstName}
	if j.Command {
		rw.Name = j.DstName
	}

	// A copy of an isolated container gets a block of its own, and its
	// layer's files follow it (shifted below).
	shift, err := planCopyBlock(j.Src.Config, j.DstConfig)
	if err != nil {
		return rep, fmt.Errorf("a new ID block for the copy of the isolated container %s: %w", j.Src.Name, err)
	}
	var shifted *idmap.ShiftStats
	if shift != nil {
		rw.IDMap, rw.OldIDMap = shift.To.Lines(), shift.From.String()
	}

	if !j.Command {
		// LXC made DST's directory its own way (0770, owned by the mapped
		// root for an unprivileged container: a directory the layer may
		// not be in, package trust); it gets SRC's first, as the copy
		// command gives it.
		if err := sameOwnerAndMode(srcDir, dstDir); err != nil {
			return rep, err
		}
	}

	srcLayer, isImage := j.Src.Hook.layerPath()
	if srcLayer != "" {
		dstLayer, inside := mapPath(srcLayer, srcDir, dstDir)
		if !inside {
			name := dirlayer.DefaultLayerName
			if isImage {
				name = loopimg.DefaultImageName
			}
			dstLayer = filepath.Join(dstDir, name)
			rw.OldLayer, rw.NewLayer = srcLayer, dstLayer
		}
		if _, err := os.Lstat(srcLayer); errors.Is(err, os.ErrNotExist) {
			rep.summary = append(rep.summary, "no layer yet (never started)")
		} else if err := layerDirOK(filepath.Dir(dstLayer)); err != nil {
			return rep, err
		} else if isImage {
			st, err := copyImageLayer(j, srcLayer, dstLayer, shift, rep)
			if err != nil {
				return rep, err
			}
			shifted = st
		} else {
			st, err := copyDirLayer(j, srcLayer, dstLayer, shift, rep)
			if err != nil {
				return rep, err
			}
			shifted = st
		}
	}

	if j.Command {
		if err := copyDirFiles(srcDir, dstDir, srcLayer, j.Src.Config); err != nil {
			return rep, err
		}
	} else {
		if j.Live != nil {
			srcCfg, _ := os.ReadFile(j.Src.Config)
			srcRootfs := strings.TrimPrefix(hook.Last(hook.ConfigValues(strings.NewReader(string(srcCfg)), "lxc.rootfs.path")["lxc.rootfs.path"]), "dir:")
			dstRootfs := strings.TrimPrefix(hook.Last(hook.ConfigValues(strings.NewReader(string(text)), "lxc.rootfs.path")["lxc.rootfs.path"]), "dir:")
			if filepath.IsAbs(srcRootfs) && filepath.IsAbs(dstRootfs) && filepath.Dir(dstRootfs) == dstDir {
				if emptied, err := emptyCopiedRoot(srcRootfs, dstRootfs); err != nil {
					return rep, fmt.Errorf("emptying %s, which LXC filled with the running container's mounted root: %w", dstRootfs, err)
				} else if emptied {
					rep.summary = append(rep.summary, "the rootfs directory that LXC filled from the running container's mounted root emptied")
				}
			}
		}
		// lxc-copy -s of a directory rootfs makes it overlay:SRC:DELTA; the
		// hooks need a directory (the layer was copied in full instead).
		if v := hook.Last(hook.ConfigValues(strings.NewReader(string(text)), "lxc.rootfs.path")["lxc.rootfs.path"]); v != "" && !strings.HasPrefix(v, "dir:") && !strings.HasPrefix(v, "/") {
			rw.Rootfs = "dir:" + filepath.Join(dstDir, "rootfs")
			if err := os.MkdirAll(filepath.Join(dstDir, "rootfs"), 0o755); err != nil {
				return rep, err
			}
			if err := sameOwnerAndMode(filepath.Join(srcDir, "rootfs"), filepath.Join(dstDir, "rootfs")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return rep, err
			}
			// LXC recorded the new container as depending on SRC's rootfs
			// (lxc_rdepends, SRC's lxc_snapshots); a full copy does not,
			// and the record would block lxc-snapshot -r and lxc-destroy
			// of SRC.
			if err := dropRdepends(srcDir, dstDir); err != nil {
				return rep, err
			}
			rep.summary = append(rep.summary, "rootfs set back to a directory (a snapshot clone copies the layer in full)")
		}
	}
	out := rw.apply(string(text))
	if err := checkHookBinaries(out); err != nil {
		return rep, fmt.Errorf("%v; the copy's config would name it and LXC would run it as root: %s, and name it on %s's hook lines first", err, trust.InstallFix, j.Src.Name)
	}
	if err := writeConfig(j.DstConfig, out, !j.Command); err != nil {
		return rep, err
	}
	if shift != nil {
		// DST's directory has SRC's owner and group (the container's root
		// group may pass it: 0710 root:GID), or LXC gave it to the source's
		// mapped root (lxc-copy of an unprivileged container): it is the
		// copy's root's now, not the source's.
		if err := idmap.ShiftOwner(dstDir, shift.From, shift.To); err != nil {
			return rep, err
		}
	}
	if shift != nil {
		os.Remove(shift.Reservation) // the config holds the block now
		s := fmt.Sprintf("its own ID block %d (%s)", shift.Block, describeBlock(shift.To))
		if shifted != nil {
			s += fmt.Sprintf(", the layer's %d files moved to it", shifted.Owners)
		}
		rep.summary = append(rep.summary, s)
	}
	return rep, nil
}

// copyImageLayer copies the image srcLayer to dstLayer (a new file): a
// stopped source's under its lock, a running one's with its filesystem
// frozen; then checks the copy (e2fsck) and adapts it (--preallocate, a
// new ID block).
func copyImageLayer(j copyJob, srcLayer, dstLayer string, shift *idShift, rep *copyReport) (*idmap.ShiftStats, error) {
	var src *os.File
	var frozen *freeze.Freeze
	var dev *loop.Device
	if j.Live == nil {
		f, err := lockNotAttached(srcLayer)
		if err != nil {
			return nil, err
		}
		src = f
	} else {
		f, d, err := openAttached(srcLayer, j.Src.Name)
		if err != nil {
			return nil, err
		}
		// Held until the thaw: the device stays bound to this image (its
		// number cannot name another), and the freeze needs it.
		dev, src = d, f
		if !j.Live.NoFreeze {
			fr, err := freeze.Start(freeze.FilesystemOn(dev.File()), freeze.Options{Max: j.Live.MaxFreeze, Name: j.Src.Name})
			if err != nil {
				f.Close()
				dev.Close()
				return nil, fmt.Errorf("freezing the filesystem of image %s (%s) of the running container %s: %w; nothing was copied", srcLayer, dev.Path, j.Src.Name, err)
			}
			frozen = fr
		}
	}
	// Held until the copy is checked: a start of a stopped SRC meanwhile
	// would attach the image and write it under the copy.
	defer src.Close()
	var reflinked, copied bool
	j.Progress.Step("copying the layer")
	res, err := whileFrozen(j.Ctx, frozen, func(ctx context.Context) error {
		var err error
		reflinked, err = clone.ImageContext(ctx, src, dstLayer, j.bytes())
		copied = err == nil
		return err
	})
	j.Progress.End(err)
	noteFreeze(j, frozen, res, rep)
	if dev != nil {
		// Not a moment longer: a stop of the container meanwhile waits
		// for its loop device to go.
		dev.Close()
	}
	if err != nil {
		if copied {
			os.Remove(dstLayer) // the copy just made, whose freeze did not hold
		}
		return nil, fmt.Errorf("copying the image %s: %w", srcLayer, err)
	}
	killpoint.At("copy:after-image-copy") // test-only
	if j.Src.Hook.Preallocate {
		// The hook line says --preallocate, which the copy keeps:
		// the copy reserves its space on the host as the source
		// did, or a full host would fail the container's writes.
		j.Progress.Step("reserving the copy's space on the host (fallocate)")
		err := preallocate(dstLayer)
		j.Progress.End(err)
		if err != nil {
			os.Remove(dstLayer) // the copy just made, not the source
			return nil, fmt.Errorf("the copy of %s is --preallocate: %w", srcLayer, err)
		}
	}
	var shifted *idmap.ShiftStats
	if shift != nil {
		j.Progress.Step("moving the copy's files to its ID block")
		st, err := shiftImageLayer(dstLayer, shift.To)
		j.Progress.End(err)
		if err != nil {
			os.Remove(dstLayer) // the copy just made, not the source
			return nil, fmt.Errorf("moving the copy's files to its new ID block: %w", err)
		}
		shifted = &st
	}
	how := "sparse copy"
	if reflinked {
		how = "reflink"
	}
	if j.Src.Hook.Preallocate {
		how = map[bool]string{true: "reflink, preallocated", false: "preallocated copy"}[reflinked]
	}
	layer := &CopyLayer{Kind: "image", Path: dstLayer, Method: how}
	if err := fsckCopy(dstLayer, j.Live != nil && j.Live.NoFreeze, layer, j.Progress); err != nil {
		os.Remove(dstLayer) // the copy just made, not the source
		return nil, fmt.Errorf("the copy of %s %v, so it was not kept", srcLayer, err)
	}
	layer.Fsck = "clean"
	layer.AllocatedBytes = allocatedBytes(dstLayer)
	rep.layer = layer
	check := "fsck clean"
	if layer.OrphansReleased > 0 {
		check = fmt.Sprintf("fsck clean once e2fsck -p released %d inode(s) deleted while open, as its first mount would", layer.OrphansReleased)
	}
	if layer.JournalReplayed {
		check = "fsck clean once e2fsck -p replayed its journal"
	}
	rep.summary = append(rep.summary, fmt.Sprintf("image %s (%s, %s, %s)", dstLayer, how, allocated(dstLayer), check))
	noteConsistency(j, rep)
	return shifted, nil
}

// copyDirLayer copies the layer directory srcLayer to dstLayer (new): a
// stopped source's under the layer's lock, a running one's with its
// container frozen (cgroup freezer) and the layer synced.
func copyDirLayer(j copyJob, srcLayer, dstLayer string, shift *idShift, rep *copyReport) (*idmap.ShiftStats, error) {
	var unlock func()
	var err error
	if j.Live == nil {
		unlock, err = dirlayer.LockForCopy(srcLayer)
	} else {
		unlock, err = dirlayer.LockForLiveCopy(srcLayer, j.Src.Config)
	}
	if err != nil {
		return nil, err
	}
	// Held until the layer is copied: a start of SRC meanwhile would
	// write it under the copy.
	defer unlock()
	var frozen *freeze.Freeze
	if j.Live != nil && !j.Live.NoFreeze {
		// The layer's dirty data out first, while the container runs: the
		// sync inside the freeze then has little left to write.
		syncLayer(srcLayer)
		fr, err := freezeContainer(j)
		if err != nil {
			return nil, err
		}
		frozen = fr
	}
	copied := false
	j.Progress.Step("copying the layer")
	res, err := whileFrozen(j.Ctx, frozen, func(ctx context.Context) error {
		if frozen != nil {
			// What overlayfs wrote is on the upper's filesystem, all of
			// it: no process of the container is between two writes.
			syncLayer(srcLayer)
		}
		err := clone.TreeWith(ctx, srcLayer, dstLayer, j.bytes())
		copied = err == nil
		return err
	})
	j.Progress.End(err)
	noteFreeze(j, frozen, res, rep)
	if err != nil {
		if copied {
			clone.RemoveFresh(dstLayer) // the copy just made, whose freeze did not hold
		}
		return nil, fmt.Errorf("copying the layer directory %s: %w", srcLayer, err)
	}
	if j.Live != nil {
		// The source's claim on its layer, copied with it: the copy's
		// start would take it for another running container's.
		os.Remove(filepath.Join(dstLayer, dirlayer.InUseName))
	}
	killpoint.At("copy:after-layer-copy") // test-only
	var shifted *idmap.ShiftStats
	if shift != nil {
		j.Progress.Step("moving the copy's files to its ID block")
		st, err := shiftLayerRoot(dstLayer, shift.To)
		j.Progress.End(err)
		if err != nil {
			return nil, fmt.Errorf("moving the copy's files to its new ID block: %w", err)
		}
		shifted = &st
	}
	_, alloc := du(dstLayer)
	rep.layer = &CopyLayer{Kind: "directory", Path: dstLayer, Method: "cp -a", AllocatedBytes: alloc}
	rep.summary = append(rep.summary, "layer "+dstLayer)
	noteConsistency(j, rep)
	return shifted, nil
}

// dropRdepends undoes LXC's record of an overlay snapshot clone at dstDir
// of the container at srcDir: dstDir/lxc_rdepends, and dstDir's entry
// ("LXCPATH\nNAME\n", or a count in the old format) in
// srcDir/lxc_snapshots.
func dropRdepends(srcDir, dstDir string) error {
	if err := os.Remove(filepath.Join(dstDir, "lxc_rdepends")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	p := filepath.Join(srcDir, "lxc_snapshots")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var keep []string
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		if n > 1 {
			keep = []string{strconv.Itoa(n - 1)}
		}
	} else {
		for i := 0; i < len(lines); i++ {
			if i+1 < len(lines) && filepath.Clean(lines[i]) == filepath.Dir(dstDir) && lines[i+1] == filepath.Base(dstDir) {
				i++
				continue
			}
			keep = append(keep, lines[i])
		}
	}
	if len(keep) == 0 {
		return os.Remove(p)
	}
	return os.WriteFile(p, []byte(strings.Join(keep, "\n")+"\n"), 0o644)
}

// sameOwnerAndMode gives the directory dst the owner, group and mode of
// src (lstat: a symlink's own).
func sameOwnerAndMode(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	// Owner first: chown may clear set-ID bits that chmod then sets.
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "chown", Path: dst, Err: err}
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: dst, Err: err}
	}
	return nil
}

// preallocate reserves the whole of the image at path (fallocate mode 0:
// data and size kept, holes allocated).
func preallocate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, fi.Size()); err != nil {
		return fmt.Errorf("reserving its %s on the host (fallocate): %w", humanApprox(fi.Size()), err)
	}
	return f.Sync()
}

// lockNotAttached opens the image at path (checked as a start checks it:
// package trust) and refuses to copy an image some loop device (a running
// container, a leftover) may be writing: the hook holds a flock for as
// long as it is attached. The shared lock it takes is kept until the
// returned file is closed, so a start of the container (which takes the
// lock exclusively) is refused while the copy runs instead of writing the
// image being copied.
func lockNotAttached(path string) (*os.File, error) {
	f, err := image.Open(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("image %q is in use (locked): by a container that started meanwhile, or a leftover of one (see status); nothing was copied", path)
	}
	return f, nil
}

// layerDirOK makes the directory that receives the copy's layer (0700
// where missing) and checks it as a start will (package trust): a copy
// its first start refuses is no copy.
func layerDirOK(dir string) error {
	d, err := trust.MkdirAll(dir, "the copy's layer directory", 0o700)
	if err != nil {
		return err
	}
	return d.Close()
}

// fsckCopy checks the image copy at path (ours, just made) with
// e2fsck -fn, through the file opened and checked by name once. A copy of
// a running container's filesystem holds, in its orphan list, the files
// its processes deleted and still had open: e2fsck -p releases them in the
// copy first, as the copy's first mount would (it is no journal replay,
// and a frozen filesystem's journal is empty). A journal to replay is the
// mark of a copy taken without a freeze: replayed too where noFreeze says
// so, else the copy failed. It records what it did in layer.
func fsckCopy(path string, noFreeze bool, layer *CopyLayer, m *progress.Meter) error {
	f, err := image.Open(path, os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	sb, err := image.ReadSuperblock(f)
	if err != nil {
		return fmt.Errorf("has no readable superblock (%v)", err)
	}
	if sb.NeedsRecovery() && !noFreeze {
		return errors.New("needs a journal replay (the filesystem was not frozen while it was copied)")
	}
	if sb.NeedsRecovery() || sb.HasOrphans() {
		out, code, err := image.Preen(f)
		if err != nil {
			return fmt.Errorf("could not be checked (e2fsck -p: %v)", err)
		}
		layer.OrphansReleased = strings.Count(out, "Clearing orphaned inode")
		layer.JournalReplayed = sb.NeedsRecovery()
		switch {
		case code >= 4:
			return fmt.Errorf("has errors e2fsck -p does not repair (exit %d): %s", code, lastLines(out, 3))
		case code != 0 && !noFreeze:
			return fmt.Errorf("needed repairs beyond its orphan inodes (e2fsck -p exit %d): %s", code, lastLines(out, 3))
		}
	}
	m.Step("checking the copy (e2fsck -fn)")
	out, err := image.FsckReadOnlyShowing(f, m)
	m.End(err)
	if err != nil {
		return fmt.Errorf("does not fsck clean (e2fsck -fn: %v): %s", err, lastLines(out, 3))
	}
	return nil
}

func allocated(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprintf("%s of %s allocated", humanApprox(st.Blocks*512), humanApprox(st.Size))
}

func allocatedBytes(path string) int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// mapPath maps p under srcDir to the same place under dstDir.
func mapPath(p, srcDir, dstDir string) (string, bool) {
	rel, err := filepath.Rel(srcDir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return p, false
	}
	return filepath.Join(dstDir, rel), true
}

// copyDirFiles copies what else is in SRC's directory (rootfs, an fstab,
// hook scripts), leaving out its config (rewritten), its layer (copied),
// logs and snapshots.
func copyDirFiles(srcDir, dstDir, layerPath, config string) error {
	ents, err := os.ReadDir(srcDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(srcDir, e.Name())
		switch e.Name() {
		case "snaps", "lxc_snapshots", "lxc_rdepends": // LXC's records of SRC's snapshots
			continue
		case oldRootfsName: // what convert moved aside: the template holds it
			continue
		}
		if p == layerPath || p == config || strings.HasSuffix(e.Name(), ".log") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dst := filepath.Join(dstDir, e.Name())
		if _, inside := mapPath(layerPath, p, dst); inside && layerPath != "" {
			continue // a directory holding the layer: made, with the layer, above
		}
		if e.IsDir() && isMountpoint(p) {
			// A running unprivileged container's root, attached on its
			// rootfs directory on the host: the directory is copied, not
			// the container's whole tree mounted there.
			err = emptyDirLike(srcDir, e.Name(), dst)
		} else if e.IsDir() {
			err = clone.Tree(p, dst)
		} else {
			err = clone.File(p, dst)
		}
		if err != nil {
			return fmt.Errorf("copying %s: %w", p, err)
		}
	}
	return nil
}

// writeConfig writes a config: a new file for the copy command, replacing
// LXC's for the clone hook.
func writeConfig(path, text string, replace bool) error {
	tmp := path + ".lxc-hook-copy"
	if err := os.WriteFile(tmp, []byte(text), 0o640); err != nil {
		os.Remove(tmp)
		return err
	}
	if replace {
		return os.Rename(tmp, path)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// rewrite turns SRC's config into DST's.
type rewrite struct {
	SrcDir, DstDir string
	// SrcName and DstName rename a log file NAME.log in the directory.
	SrcName, DstName string
	Name             string // lxc.uts.name, when set
	Rootfs           string // lxc.rootfs.path, when set
	KeepRootfs       bool   // LXC set lxc.rootfs.path already
	// OldLayer, when set, is SRC's layer outside its directory; NewLayer
	// replaces it on the hook lines.
	OldLayer, NewLayer string
	// IDMap, when set, replaces the lxc.idmap lines (a copy of an
	// isolated container); OldIDMap, SRC's mapping as a comment shows it,
	// is replaced with the new one in comments.
	IDMap    []string
	OldIDMap string
}

// apply rewrites config text line by line; comments and lines it does not
// change are kept as they are.
func (r rewrite) apply(text string) string {
	lines := strings.SplitAfter(text, "\n")
	idmapWritten := false
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if t != "" && t[0] == '#' && r.OldIDMap != "" && r.IDMap != nil {
			lines[i] = strings.ReplaceAll(line, r.OldIDMap, idmapString(r.IDMap))
		}
		if t == "" || t[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		nv := v
		if k == idmap.ConfigKey && r.IDMap != nil {
			// The first lxc.idmap line becomes the new mapping, the others go.
			lines[i] = ""
			if !idmapWritten {
				for _, l := range r.IDMap {
					lines[i] += k + " = " + l + "\n"
				}
				idmapWritten = true
			}
			continue
		}
		switch {
		case (k == "lxc.uts.name" || k == "lxc.utsname") && r.Name != "":
			k, nv = "lxc.uts.name", r.Name
		case k == "lxc.rootfs.path" && r.Rootfs != "":
			nv = r.Rootfs
		case k == "lxc.rootfs.path" && r.KeepRootfs:
		case strings.HasPrefix(k, "lxc.hook."):
			nv = r.hookLine(v)
		default:
			nv = replacePath(v, r.SrcDir, r.DstDir)
			if (k == "lxc.log.file" || k == "lxc.console.logfile") && r.SrcName != "" && r.DstName != "" && filepath.Base(nv) == r.SrcName+".log" && filepath.Dir(nv) == r.DstDir {
				nv = filepath.Join(r.DstDir, r.DstName+".log")
			}
			if r.OldLayer != "" && strings.HasPrefix(k, "lxc.hook.") {
				nv = replacePath(nv, r.OldLayer, r.NewLayer)
			}
		}
		if nv != v {
			nl := ""
			if strings.HasSuffix(line, "\n") {
				nl = "\n"
			}
			lines[i] = k + " = " + nv + nl
		}
	}
	return strings.Join(lines, "")
}

// hookLine rewrites a hook line's paths word by word, as sh splits it, and
// quotes what it writes: a new directory with a blank or a quote in its
// name stays one argument. A line sh would expand is
// rewritten as text, as before.
func (r rewrite) hookLine(v string) string {
	words, err := hook.SplitWords(v)
	if err != nil {
		nv := replacePath(v, r.SrcDir, r.DstDir)
		if r.OldLayer != "" {
			nv = replacePath(nv, r.OldLayer, r.NewLayer)
		}
		return nv
	}
	changed := false
	for i, w := range words {
		nw := replacePath(w, r.SrcDir, r.DstDir)
		if r.OldLayer != "" {
			nw = replacePath(nw, r.OldLayer, r.NewLayer)
		}
		if nw != w {
			words[i], changed = nw, true
		}
	}
	if !changed {
		return v
	}
	return hook.JoinWords(words)
}

// replacePath replaces the path old, where it stands as a whole path or a
// path's leading directories in s, with new.
func replacePath(s, old, new string) string {
	old = strings.TrimSuffix(old, "/")
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		if nw := strings.TrimSuffix(new, "/"); len(nw) > len(old) && strings.HasPrefix(s[i:], nw) && (i+len(nw) == len(s) || strings.ContainsRune("/ \t:,'\"", rune(s[i+len(nw)]))) {
			// Already rewritten (LXC did, for a new directory below the
			// old one: a snapshot's).
			b.WriteString(s[:i+len(nw)])
			s = s[i+len(nw):]
			continue
		}
		startOK := i == 0 || strings.ContainsRune(" \t=:,'\"", rune(s[i-1]))
		endOK := end == len(s) || strings.ContainsRune("/ \t:,'\"", rune(s[end]))
		b.WriteString(s[:i])
		if startOK && endOK {
			b.WriteString(new)
		} else {
			b.WriteString(old)
		}
		s = s[end:]
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " / ")
}

// isCloneHook reports whether LXC runs the binary as lxc.hook.clone
// (lxc-copy, lxc-snapshot, lxc-copy -R).
func isCloneHook(args []string, getenv func(string) string) bool {
	if getenv("LXC_HOOK_VERSION") == "1" {
		return getenv("LXC_HOOK_TYPE") == string(hook.Clone)
	}
	return getenv("LXC_NAME") != "" && hook.HookTypeIn(args, getenv("LXC_NAME")) == string(hook.Clone)
}

// CloneHook runs as lxc.hook.clone: LXC copied SRC's config to the new
// container (names, rootfs and MAC addresses updated) and its rootfs
// directory, but not the writable layer. This copies it, as the copy
// command does, and rewrites the new config's paths. Its errors make LXC
// refuse the copy (and remove it); they are logged to SRC's LXC log too,
// as LXC shows a hook's output only at debug level.
func CloneHook(program, category string, stderr io.Writer) int {
	name, cfg := os.Getenv("LXC_NAME"), os.Getenv("LXC_CONFIG_FILE")
	srcName := os.Getenv("LXC_SRC_NAME")
	dst, err := loadConfig(filepath.Dir(filepath.Dir(cfg)), name, cfg)
	srcCfg := ""
	if err == nil {
		srcCfg = dst.Hook.Config
		if srcCfg == "" {
			srcCfg = filepath.Join(filepath.Dir(filepath.Dir(cfg)), srcName, "config")
		}
	}
	logCfg := srcCfg
	if logCfg == "" {
		logCfg = cfg
	}
	// LXC keeps a hook's output to its debug log and lxc-copy says nothing
	// but its exit status: a refusal also goes to the terminal lxc-copy
	// runs on, where there is one.
	var w io.Writer = stderr
	var meter *progress.Meter
	tty, ttyErr := os.OpenFile("/dev/tty", os.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if ttyErr == nil {
		defer tty.Close()
		w = io.MultiWriter(stderr, tty)
		meter = progress.New(tty) // a long copy shows its progress there too
	}
	log, closer, _ := lxclog.New(lxclog.Options{
		Program: program, Category: category, Container: name, Hook: string(hook.Clone),
		ConfigFile: logCfg, EnvLevel: os.Getenv("LXC_LOG_LEVEL"), Stderr: w,
	})
	defer closer.Close()
	if err != nil {
		log.Errorf("copy of %s to %s refused: %v", srcName, name, err)
		return 1
	}
	if err := trust.Running(); err != nil {
		log.Errorf("copy of %s to %s refused: %s", srcName, name, trust.HookRefusal(err, true))
		return 1
	}
	if filepath.Clean(srcCfg) == filepath.Clean(cfg) {
		return 0 // already this container's own
	}
	if srcName != "" && filepath.Base(filepath.Dir(srcCfg)) != srcName {
		// The source's own --config names a third container: the source
		// is itself a copy made without its layer, and copying the layer
		// --config names would copy the wrong container.
		log.Errorf("copy of %s to %s refused: %s's hook lines name --config %s, another container's config, so %s has no layer of its own to copy; make copies with \"%s copy SRC DST\"", srcName, name, srcName, srcCfg, srcName, program)
		return 1
	}
	src, err := loadConfig(filepath.Dir(filepath.Dir(srcCfg)), filepath.Base(filepath.Dir(srcCfg)), srcCfg)
	if err != nil {
		log.Errorf("copy of %s to %s refused: the source's config: %v", srcName, name, err)
		return 1
	}
	// lxc-copy --allowrunning copies a running container's config: its
	// layer is copied frozen, as the copy command does.
	st, pid := src.info()
	live, err := liveOf(src, st, pid)
	if err != nil {
		log.Errorf("copy of %s to %s refused: %v", srcName, name, err)
		return 1
	}
	// Ctrl-C on lxc-copy reaches this hook too: a freeze is lifted at once.
	ctx, interrupted := interruptible()
	defer interrupted.stop()
	t0 := time.Now()
	rep, err := copyContainer(copyJob{Src: src, DstConfig: cfg, DstName: name, Progress: meter, Live: live, Ctx: ctx})
	if s := interrupted.signal(); s != nil {
		err = fmt.Errorf("interrupted (%v)%s", s, rep.thawNote())
	}
	if err != nil {
		log.Errorf("copy of %s to %s refused: %v", srcName, name, err)
		return 1
	}
	entry := log.WithField("took", time.Since(t0).Round(time.Millisecond))
	if rep.froze {
		entry = entry.WithField("frozen", roundFrozen(rep.freeze.Frozen))
	}
	entry.Infof("copied the writable layer of %s for %s%s", srcCfg, cfg, rep.text())
	if live != nil && ttyErr == nil {
		// What the copy cost the running source, where lxc-copy's user
		// sees it (the log line above is at INFO, below the usual level).
		fmt.Fprintf(tty, "%s: copied the writable layer of the running container %s for %s%s\n", program, srcName, name, rep.text())
	}
	return 0
}

// idmapString is lxc.idmap values as Mapping.String shows them (the
// form init's config comment names the mapping in).
func idmapString(lines []string) string {
	m, err := idmap.ParseLXC(lines)
	if err != nil || m == nil {
		return strings.Join(lines, ", ")
	}
	return m.String()
}
