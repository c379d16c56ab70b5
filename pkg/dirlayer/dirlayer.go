// Package dirlayer is the writable layer kept in a host directory, used by
// lxc-hook-overlay (and lxc-hook-aufs): --upper DIR holds the union's
// upper and work directories, on one filesystem, and the marker naming the
// filesystem that writes them. DIR must pass package trust's rule (root's
// alone, with every directory above it); everything in it is made, read,
// written and chowned through its fd, no link followed.
package dirlayer

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// Overlay is lxc-hook-overlay's backend.
type Overlay struct {
	Flags
}

func (o *Overlay) Program() string  { return "lxc-hook-overlay" }
func (o *Overlay) Category() string { return "overlay" }
func (o *Overlay) Synopsis() string {
	return "[--lower PATH]... [--upper DIR]"
}
func (o *Overlay) Description() string {
	return `An LXC hook that boots a container from a read-only template with a writable
overlayfs layer kept in a host directory. The template is never changed.
Put the same line on lxc.hook.pre-mount and lxc.hook.stop (unprivileged: pre-start and stop),
with lxc.rootfs.path = dir:/path/to/an/empty/directory.`
}
func (o *Overlay) MountSource() string { return "lxc-hook-overlay" }

func (o *Overlay) RegisterFlags(fs *flag.FlagSet) {
	o.Flags.Register(fs, false)
}

func (o *Overlay) Validate(configFile string) error { return o.Flags.Validate(configFile, false) }

func (o *Overlay) PrepareWritable(c *runner.Context) (*runner.Writable, error) {
	if o.Ephemeral {
		return PrepareEphemeral(c, o.Size)
	}
	w, d, err := prepare(o.Upper, layer.Overlay)
	if err != nil {
		return nil, err
	}
	// The claim first: a layer another container runs on is refused as
	// such, whoever its owner is.
	if err := Claim(c, d); err != nil {
		d.Close()
		return nil, err
	}
	if err := layer.CheckOwner(d, o.Upper, DefaultLayerName, c.Inv.ConfigFile, o.Program()); err != nil {
		d.Close()
		return nil, err
	}
	w.Dir = d // the runner checks the layer's owner through it, then closes it
	return w, nil
}

// EphemeralSource names the tmpfs of an ephemeral layer in mountinfo.
const EphemeralSource = "lxc-hook-ephemeral"

// PrepareEphemeral mounts a new tmpfs (capped at size, when given) in the
// container's mount namespace, on a mountpoint in the runtime directory,
// and makes it the writable layer. Nothing of it is ever on disk; it goes
// with the namespace even when the stop hooks never run (a crash), and the
// stop hook unmounts it with the rest (it is under the runtime directory).
// overlayfs takes a tmpfs upper (trusted.* xattrs as root).
func PrepareEphemeral(c *runner.Context, size string) (*runner.Writable, error) {
	mp, err := c.Run.Mountpoint("ephemeral")
	if err != nil {
		return nil, err
	}
	c.Record.Mountpoints = append(c.Record.Mountpoints, mp)
	params := []mount.Param{{Key: "mode", Value: "0700"}}
	if size != "" {
		params = append(params, mount.Param{Key: "size", Value: size})
	}
	if err := mount.Block("tmpfs", EphemeralSource, mp, false, params...); err != nil {
		return nil, fmt.Errorf("ephemeral layer: %w", err)
	}
	c.PushUndo(func() { _ = mount.Unmount(mp) })
	c.Log.WithField("size", size).Debugf("ephemeral layer: tmpfs on %s", mp)
	return PrepareIn(mp, layer.Overlay, "ephemeral layer")
}

// AfterStop drops the container's claim on its layer.
func (o *Overlay) AfterStop(c *runner.Context) { Release(c, o.Upper) }

func (o *Overlay) MountUnion(c *runner.Context, lowers []string, w *runner.Writable, target string) error {
	return mount.MountOverlay(mount.Overlay{Source: o.MountSource(), Lowers: lowers, Upper: w.Upper, Work: w.Work}, target)
}

// Prepare makes dir a writable layer for the union filesystem fs: dir
// (0700) with upper/ and work/ on one filesystem, and the marker. A layer
// written by another union filesystem is refused, as is a dir someone
// other than root can change (package trust).
func Prepare(dir, fs string) (*runner.Writable, error) {
	w, d, err := prepare(dir, fs)
	if err != nil {
		return nil, err
	}
	d.Close()
	return w, nil
}

// prepare is Prepare, handing on the layer directory, open and checked:
// everything in it is used through it.
func prepare(dir, fs string) (*runner.Writable, *trust.Dir, error) {
	dir = filepath.Clean(dir)
	d, err := trust.MkdirAll(dir, "--upper", 0o700)
	if errors.Is(err, unix.ENOTDIR) {
		return nil, nil, fmt.Errorf("--upper %q is not a directory", dir)
	}
	if err != nil {
		var te *trust.Error
		if errors.As(err, &te) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("--upper %q: %w", dir, err)
	}
	w, err := prepareIn(d, fs, "--upper")
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return w, d, nil
}

// PrepareIn makes upper/ and work/ in root (an existing directory, or the
// root of a mounted image) and checks its marker. what names root in
// errors. root must pass package trust's rule.
func PrepareIn(root, fs, what string) (*runner.Writable, error) {
	d, err := trust.OpenDir(root, what)
	if err != nil {
		return nil, err
	}
	w, err := prepareIn(d, fs, what)
	if err != nil {
		d.Close()
		return nil, err
	}
	w.Dir = d // the runner checks the layer's owner through it, then closes it
	return w, nil
}

// prepareIn works through d's fd only: upper/ and work/ are made or
// found there with no link followed (they belong to the container, and
// are its root's in an unprivileged layer), and compared by fstatat.
func prepareIn(d *trust.Dir, fs, what string) (*runner.Writable, error) {
	root := d.Path()
	w := &runner.Writable{Root: root, Upper: filepath.Join(root, "upper"), Work: filepath.Join(root, "work")}
	// upper/ becomes the container's "/": the usual 0755 root:root.
	if err := d.Mkdir("upper", 0o755); err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, root, err)
	}
	if err := d.Mkdir("work", 0o700); err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, root, err)
	}
	su, err := d.Lstat("upper")
	if err != nil {
		return nil, err
	}
	sw, err := d.Lstat("work")
	if err != nil {
		return nil, err
	}
	if su.Dev != sw.Dev {
		return nil, fmt.Errorf("%s %q: upper/ and work/ are on different filesystems; overlayfs needs them on one", what, root)
	}
	if err := layer.CheckMarker(d, fs); err != nil {
		return nil, err
	}
	return w, nil
}
