// Package loopimg is lxc-hook-loopimg's backend: the writable layer lives
// in a fixed-size ext4 image on a loop device, which caps the container's
// disk use. A container that fills it gets ENOSPC; the host is untouched.
//
// One image, one loop device, one container: the hook takes an exclusive
// flock on the image's open file and hands that very file to the loop
// device, so the lock lives exactly as long as the device is bound. A
// second start with the same image finds the lock (or, for a device
// attached by other tools, the device itself) and is refused.
package loopimg

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/dirlayer"
	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// Backend is lxc-hook-loopimg's.
type Backend struct {
	Flags
}

func (b *Backend) Program() string     { return "lxc-hook-loopimg" }
func (b *Backend) Category() string    { return "loopimg" }
func (b *Backend) MountSource() string { return "lxc-hook-loopimg" }
func (b *Backend) Synopsis() string {
	return "[--lower PATH]... [--image FILE] [--size SIZE] [--preallocate] [--direct-io=false]"
}
func (b *Backend) Description() string {
	return `An LXC hook that boots a container from a read-only template with a writable
overlayfs layer inside a fixed-size ext4 image file on a loop device: the
image caps the container's disk use (a full layer is ENOSPC inside, the host
is untouched). The image is created on first start, checked with e2fsck -p
when its superblock asks for it, grown when --size grows, never shrunk,
formatted or deleted. Nothing stays mounted or attached after a stop.
Put the same line on lxc.hook.pre-mount and lxc.hook.stop (unprivileged: pre-start and stop),
with lxc.rootfs.path = dir:/path/to/an/empty/directory.`
}

func (b *Backend) RegisterFlags(fs *flag.FlagSet)   { b.Flags.Register(fs) }
func (b *Backend) Validate(configFile string) error { return b.Flags.Validate(configFile) }

func (b *Backend) MountUnion(c *runner.Context, lowers []string, w *runner.Writable, target string) error {
	return mount.MountOverlay(mount.Overlay{Source: b.MountSource(), Lowers: lowers, Upper: w.Upper, Work: w.Work}, target)
}

// PrepareWritable makes the image ready and mounts it in the container's
// mount namespace; the union's upper and work directories are inside.
func (b *Backend) PrepareWritable(c *runner.Context) (*runner.Writable, error) {
	image.OnSlow = func(tool, img string, d time.Duration) {
		c.Log.Warnf("%s on image %s still running after %s; the start waits for it: interrupted, %s could damage the filesystem", tool, img, d.Round(time.Second), tool)
	}
	// The image's directory, checked (package trust) and kept open:
	// the image is found, created and opened relative to it, never by its
	// name again.
	d, name, err := b.imageDir()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ephemeral := ""
	if b.Ephemeral {
		if ephemeral, err = b.newEphemeral(c, d); err != nil {
			return nil, err
		}
		name = ephemeral
		image := b.Image
		c.PushUndo(func() { removeBeside(image) })
	}
	f, err := b.openOrCreate(c, d, name)
	if err != nil {
		return nil, err
	}
	// The loop device takes its own reference to f (and so to the lock);
	// this one goes when pre-mount is done.
	defer f.Close()

	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("image %q: %w", b.Image, err)
	}
	if err := b.checkNotInUse(c, f, &st); err != nil {
		return nil, err
	}
	// Before anything changes the image: is it another container's?
	if err := layer.CheckImageOwner(f, b.Image, DefaultImageName, c.Inv.ConfigFile, b.Program()); err != nil {
		return nil, err
	}
	sb, sbErr := image.ReadSuperblock(f)
	if err := b.checkAndGrow(c, f, sb, sbErr); err != nil {
		return nil, err
	}

	mp, err := c.Run.Mountpoint("image")
	if err != nil {
		return nil, err
	}
	c.Record.Mountpoints = append(c.Record.Mountpoints, mp)
	dev, err := b.attachAndMount(c, f, &st, mp)
	if damaged(err) && b.Fsck != "never" {
		// The superblock said clean, but the kernel found damaged metadata
		// (bad group descriptors: EUCLEAN, or EBADMSG for a bad checksum).
		// e2fsck -p repairs much of that; run it once, forced (the clean
		// flag lies), on the file with no loop device attached, whose
		// cache would still hold the damaged blocks, then try once more.
		c.Log.WithError(err).Warnf("image %s: the kernel refused to mount it; running e2fsck -p -f once", b.Image)
		if repaired, ferr := image.Fsck(f, true); ferr != nil {
			return nil, fmt.Errorf("image %q: the kernel refused to mount it (%v), and %v; the container stays stopped until then", b.Image, errors.Unwrap(err), ferr)
		} else if repaired {
			c.Log.Warnf("image %s: e2fsck -p repaired it", b.Image)
		}
		dev, err = b.attachAndMount(c, f, &st, mp)
		if damaged(err) {
			return nil, fmt.Errorf("image %q: the kernel refuses to mount it (%v) even after e2fsck -p; repair it by hand with e2fsck -f %s (the container stays stopped until then)", b.Image, errors.Unwrap(err), b.Image)
		}
	}
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	c.PushUndo(func() { _ = mount.Unmount(mp) })
	if ephemeral != "" {
		// Mounted: the loop device holds the file, which goes with the
		// device (autoclear) when the container stops, or crashes.
		if err := d.Remove(ephemeral); err != nil {
			return nil, fmt.Errorf("ephemeral image %q: %w", b.Image, err)
		}
	}
	killpoint.At("pre-mount:after-image-mount")
	if b.DirectIO || c.Log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		// Whether direct I/O took: loop.Attach falls back to buffered I/O
		// where the host filesystem refuses O_DIRECT (ramfs, some FUSE or
		// network filesystems), and the user asked for direct I/O.
		dio := "buffered"
		if st, err := dev.Status(); err == nil && st.DirectIO() {
			dio = "direct"
		}
		if b.DirectIO && dio == "buffered" {
			c.Log.WithField("device", dev.Path).Infof("image %s: the host filesystem refuses direct I/O, so its loop device uses buffered I/O (the layer's pages are cached twice)", b.Image)
		}
		c.Log.WithField("device", dev.Path).WithField("io", dio).Debugf("image %s mounted on %s", b.Image, mp)
	}
	return dirlayer.PrepareIn(mp, layer.Overlay, "image")
}

// imageDir opens and checks the directory of --image (package trust).
func (b *Backend) imageDir() (*trust.Dir, string, error) {
	d, name, err := trust.Parent(b.Image, "--image")
	if err == nil {
		return d, name, nil
	}
	var te *trust.Error
	switch dir := filepath.Dir(b.Image); {
	case errors.As(err, &te):
		return nil, "", err
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("--image %q: directory %q does not exist", b.Image, dir)
	case errors.Is(err, unix.ENOTDIR):
		return nil, "", fmt.Errorf("--image %q: %q is not a directory", b.Image, dir)
	}
	return nil, "", fmt.Errorf("--image %q: %w", b.Image, err)
}

// removeBeside removes an ephemeral image by its path, through its
// checked directory (an undo step, after the directory was closed).
func removeBeside(path string) {
	if d, name, err := trust.Parent(path, "--image"); err == nil {
		d.Remove(name)
		d.Close()
	}
}

// newEphemeral makes a new image for an --ephemeral layer in d, beside
// --image under a name of this container's own (never --image itself),
// points b.Image at it and returns its name in d. A file of that name is a
// leftover of a start that died between creating and mounting it: removed
// unless something holds it, or it is not a file of root's with one name
// (then it was not made by a start, and is left alone).
func (b *Backend) newEphemeral(c *runner.Context, d *trust.Dir) (string, error) {
	name := "." + filepath.Base(b.Image) + ".ephemeral." + filepath.Base(c.Run.Path)
	p := d.Join(name)
	if _, err := d.Lstat(name); err == nil {
		f, err := image.OpenIn(d, name, os.O_RDWR)
		if err != nil {
			return "", fmt.Errorf("ephemeral image %q of an earlier start: %w", p, err)
		}
		var st unix.Stat_t
		busy := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
		if !busy && unix.Fstat(int(f.Fd()), &st) == nil {
			devs, err := loop.FindByBacking(uint64(st.Dev), st.Ino)
			busy = err != nil || len(devs) > 0
		}
		f.Close()
		if busy {
			return "", fmt.Errorf("ephemeral image %q of an earlier start is still in use", p)
		}
		if err := d.Remove(name); err != nil {
			return "", fmt.Errorf("ephemeral image %q left by an earlier start: %w", p, err)
		}
		c.Log.Warnf("removed the ephemeral image %s left by an earlier start", p)
	}
	if err := image.CreateIn(d, name, image.CreateOptions{Size: b.size}); err != nil {
		return "", err
	}
	b.Image = p
	return name, nil
}

// attachAndMount attaches f to a new autoclear loop device and mounts its
// ext4 on mp. On success the caller closes the device once it no longer
// needs it (the mount holds it); on failure the device is gone.
func (b *Backend) attachAndMount(c *runner.Context, f *os.File, st *unix.Stat_t, mp string) (*loop.Device, error) {
	dev, err := loop.Attach(f, loop.Options{Autoclear: true, DirectIO: b.DirectIO})
	if err != nil {
		return nil, fmt.Errorf("image %q: attaching a loop device: %w", b.Image, err)
	}
	killpoint.At("pre-mount:after-attach")
	var opts []mount.Param
	if b.Discard && !b.Preallocate {
		// Blocks freed inside become holes in the image again, so deleting
		// files gives the host its space back; a preallocated image keeps
		// its reservation.
		opts = append(opts, mount.Param{Key: "discard", Flag: true})
	}
	if err := mount.Block("ext4", dev.Path, mp, false, opts...); err != nil {
		// Closing the only reference frees the autoclear device.
		dev.Close()
		return nil, fmt.Errorf("image %q: %w", b.Image, err)
	}
	c.Record.Loops = append(c.Record.Loops, state.Loop{
		Device: dev.Path, Number: dev.Number, Diskseq: dev.Diskseq,
		Backing: b.Image, Dev: uint64(st.Dev), Ino: st.Ino, Role: "image",
	})
	return dev, nil
}

// damaged reports a mount refused for damaged metadata: EUCLEAN (ext4's
// EFSCORRUPTED, "Structure needs cleaning") or EBADMSG (EFSBADCRC).
func damaged(err error) bool {
	return errors.Is(err, unix.EUCLEAN) || errors.Is(err, unix.EBADMSG)
}

// openOrCreate opens the image name in its checked directory d
// read-write, creating it first if it does not exist. It must be a regular
// file of root's, writable by root alone, with one name (image.OpenIn).
func (b *Backend) openOrCreate(c *runner.Context, d *trust.Dir, name string) (*os.File, error) {
	if _, err := d.Lstat(name); errors.Is(err, fs.ErrNotExist) {
		if b.size == 0 {
			return nil, fmt.Errorf("image %q does not exist and no --size was given to create it", b.Image)
		}
		t0 := time.Now()
		err := image.CreateIn(d, name, image.CreateOptions{Size: b.size, Preallocate: b.Preallocate})
		switch {
		case err == nil:
			c.Log.WithField("took", time.Since(t0).Round(time.Millisecond)).Infof("created image %s (%s%s)", b.Image, image.Human(b.size), map[bool]string{true: ", preallocated", false: ", sparse"}[b.Preallocate])
		case errors.Is(err, os.ErrExist) && !errors.Is(err, image.ErrCreating):
			// Another start created it first: use theirs, like any
			// existing image (the lock below decides who may).
		default:
			return nil, err
		}
	}
	f, err := image.OpenIn(d, name, os.O_RDWR)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("image %q: %w", b.Image, pe.Err)
		}
		return nil, err // names the image, what is wrong and the fix
	}
	return f, nil
}

// checkNotInUse takes the image's lock and makes sure no loop device is
// bound to it. Refusing is the only safe answer while one is: a leftover
// of this container still has the old union mounted over the same upper
// directory (overlayfs would let both write it), and any other holder is
// another container or a tool.
func (b *Backend) checkNotInUse(c *runner.Context, f *os.File, st *unix.Stat_t) error {
	lockErr := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if lockErr != nil && !errors.Is(lockErr, unix.EWOULDBLOCK) {
		return fmt.Errorf("image %q: flock: %w", b.Image, lockErr)
	}
	if lockErr == nil && !openElsewhere(f) {
		// No hook holds the image, and nothing else has it open: a loop
		// device holds an open file, so none is bound to it, and the scan
		// of every loop device on the host (slow with a thousand of them,
		// and contended in sysfs) is not needed. Anything else is scanned.
		return nil
	}
	devs, err := loop.FindByBacking(uint64(st.Dev), st.Ino)
	if err != nil {
		return fmt.Errorf("image %q: looking for its loop devices: %w", b.Image, err)
	}
	if len(devs) > 0 {
		d := devs[0]
		rec := state.Loop{Device: d.Path, Number: d.Number, Diskseq: d.Diskseq}
		leftover := ""
		for _, l := range c.Record.Leftovers {
			if l.Number == d.Number && l.Diskseq == d.Diskseq {
				leftover = " (left from an earlier run of this container)"
				rec = l
			}
		}
		return fmt.Errorf("image %q is already attached to %s%s%s; one image serves one container at a time, so the start is refused until that ends", b.Image, d.Path, leftover, runner.HeldBy(c.Common.RunDir, rec))
	}
	if lockErr != nil {
		// The lock is held by a start preparing the image, or by the
		// e2fsck or resize2fs it ran, which keep the lock for as long as
		// they work even if their hook was killed: name who has it open.
		who := ""
		if ps := holders.WithFileOpen(b.Image); len(ps) > 0 {
			who = " (held open by " + holders.Join(ps) + ")"
		}
		return fmt.Errorf("image %q is locked by another lxc-hook-loopimg preparing it, or a tool it runs, right now%s; one image serves one container at a time, so the start is refused until that ends", b.Image, who)
	}
	return nil
}

// openElsewhere reports whether anything but f has the image file open (a
// loop device bound to it by losetup, idle or not, a process): a write
// lease (F_SETLEASE, F_WRLCK) is granted only when no other open file
// refers to the inode. Where leases are unavailable (disabled, or a
// filesystem without them), it answers true: the caller then scans.
func openElsewhere(f *os.File) bool {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		return true
	}
	unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
	return false
}

// checkAndGrow refuses anything but ext4, runs e2fsck -p when needed, and
// grows the image to --size. It never shrinks.
func (b *Backend) checkAndGrow(c *runner.Context, f *os.File, sb *image.Superblock, err error) error {
	if err != nil {
		if errors.Is(err, image.ErrNotExt) {
			return fmt.Errorf("image %q is not an ext4 filesystem (%v); it is left untouched: point --image at an ext4 image, or at a path that does not exist yet to create one", b.Image, err)
		}
		return fmt.Errorf("image %q: reading its superblock: %w", b.Image, err)
	}
	why := sb.NeedsCheck(time.Now())
	if b.Fsck == "always" && why == "" {
		why = "--fsck=always"
	}
	if why != "" && b.Fsck != "never" {
		t0 := time.Now()
		// --fsck=always forces the full check: e2fsck -p alone only
		// reads the superblock of a filesystem that says it is clean.
		repaired, err := image.Fsck(f, b.Fsck == "always")
		if err != nil {
			return err
		}
		entry := c.Log.WithField("took", time.Since(t0).Round(time.Millisecond))
		if repaired {
			entry.Warnf("image %s: e2fsck -p repaired it (%s)", b.Image, why)
		} else {
			entry.Infof("image %s: e2fsck -p found it clean (%s)", b.Image, why)
		}
	}

	apparent, allocated, hostFree, err := image.Usage(f)
	if err != nil {
		return fmt.Errorf("image %q: %w", b.Image, err)
	}
	// Grow the file to --size, and the filesystem to fill the file (it may
	// be smaller after an online resize that was interrupted or refused).
	target := apparent
	if b.size > apparent {
		target = b.size
	}
	if sb.Size() < target {
		t0 := time.Now()
		if err := image.Grow(f, target, b.Preallocate); err != nil {
			return err
		}
		c.Log.WithField("took", time.Since(t0).Round(time.Millisecond)).Infof("image %s grown from %s to %s", b.Image, image.Human(sb.Size()), image.Human(target))
		if apparent, allocated, hostFree, err = image.Usage(f); err != nil {
			return fmt.Errorf("image %q: %w", b.Image, err)
		}
	}
	if b.size != 0 && b.size < apparent {
		c.Log.Warnf("image %s is %s, larger than --size %s: images are never shrunk, it stays %s", b.Image, image.Human(apparent), image.Human(b.size), image.Human(apparent))
	}
	if apparent-allocated > hostFree {
		c.Log.Warnf("image %s may need %s more on the host but only %s is free there: when the host fills up, the container's writes fail with I/O errors instead of ENOSPC (use --preallocate to reserve the space)", b.Image, image.Human(roundMiB(apparent-allocated)), image.Human(roundMiB(hostFree)))
	}
	return nil
}

func roundMiB(n int64) int64 { return (n + (1<<20 - 1)) &^ (1<<20 - 1) }
