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

// XinoName is AuFS's inode number table, kept beside the layer's upper/
// and work/ rather than in the host's /tmp (AuFS's default).
const XinoName = ".aufs.xino"

// Aufs is lxc-hook-aufs's backend. Kernels without AuFS (every mainline
// kernel) refuse the start unless --fallback=overlay.
type Aufs struct {
	Flags

	// union is the filesystem this run mounts: aufs, or overlay as fallback.
	union string
	// HasAufs reports whether the kernel has AuFS; tests replace it.
	HasAufs func() bool
}

func (a *Aufs) Program() string     { return "lxc-hook-aufs" }
func (a *Aufs) Category() string    { return "aufs" }
func (a *Aufs) MountSource() string { return "lxc-hook-aufs" }
func (a *Aufs) Synopsis() string {
	return "[--lower PATH]... [--upper DIR] [--fallback=overlay]"
}
func (a *Aufs) Description() string {
	return `An LXC hook that boots a container from a read-only template with a writable
AuFS layer kept in a host directory, on kernels that have AuFS (mainline
kernels do not: there the start is refused, or with --fallback=overlay the
layer is mounted with overlayfs). AuFS and overlayfs record deletions
differently, so a layer written by one is refused by the other.
Put the same line on lxc.hook.pre-mount and lxc.hook.stop (unprivileged: pre-start and stop),
with lxc.rootfs.path = dir:/path/to/an/empty/directory.`
}

func (a *Aufs) RegisterFlags(fs *flag.FlagSet) {
	a.Flags.Register(fs, true)
}

func (a *Aufs) Validate(configFile string) error {
	return a.Flags.Validate(configFile, true)
}

// ErrNoAufs is the refusal on kernels without AuFS.
var ErrNoAufs = errors.New("this kernel has no AuFS (it is not in /proc/filesystems and no module loads; mainline kernels never had it): use lxc-hook-overlay or lxc-hook-loopimg, or add --fallback=overlay to mount this layer with overlayfs")

func (a *Aufs) PrepareWritable(c *runner.Context) (*runner.Writable, error) {
	has := a.HasAufs
	if has == nil {
		has = func() bool { return mount.HasFilesystem("aufs") }
	}
	// A layer's own record comes first: it is the more specific error, and
	// true on every kernel.
	if got := layer.MarkerOf(a.Upper); got != "" && got != layer.Aufs && a.Fallback == "" {
		if _, err := Prepare(a.Upper, layer.Aufs); err != nil {
			return nil, err // refuses, explaining why
		}
		return nil, fmt.Errorf("layer %q changed while it was checked: try again", a.Upper)
	}
	switch {
	case has():
		a.union = layer.Aufs
	case a.Fallback == layer.Overlay:
		a.union = layer.Overlay
		c.Log.Warn("this kernel has no AuFS: mounting the layer with overlayfs (--fallback=overlay); the layer is now an overlayfs layer and lxc-hook-aufs without the fallback will refuse it")
	default:
		return nil, ErrNoAufs
	}
	w, d, err := prepare(a.Upper, a.union)
	if err != nil {
		return nil, err
	}
	// As for overlay: the claim first (a layer a live container runs on
	// is refused as such), then the owner record (a copy of a config with
	// its hook arguments unchanged names another container's layer).
	if err := Claim(c, d); err != nil {
		d.Close()
		return nil, err
	}
	if err := layer.CheckOwner(d, a.Upper, DefaultLayerName, c.Inv.ConfigFile, a.Program()); err != nil {
		d.Close()
		return nil, err
	}
	if a.union == layer.Aufs {
		// AuFS creates its xino file by name (O_CREAT|O_EXCL) in this
		// checked directory; whatever a dead mount left there goes first,
		// through the directory's fd (a link is removed, not followed).
		if err := d.Remove(XinoName); err != nil {
			d.Close()
			return nil, fmt.Errorf("--upper %q: AuFS's xino file: %w", a.Upper, err)
		}
	}
	w.Dir = d // the runner checks the layer's owner through it, then closes it
	return w, nil
}

func (a *Aufs) MountUnion(c *runner.Context, lowers []string, w *runner.Writable, target string) error {
	if a.union == layer.Overlay {
		return mount.MountOverlay(mount.Overlay{Source: a.MountSource(), Lowers: lowers, Upper: w.Upper, Work: w.Work}, target)
	}
	return mount.MountAufs(mount.Aufs{Upper: w.Upper, Lowers: lowers, Xino: filepath.Join(w.Root, XinoName)}, a.MountSource(), target)
}

// AfterStop removes AuFS's xino file: it only maps inode numbers for a live
// mount, and left behind it keeps its size on the host. Only a regular
// file is removed, through the checked layer directory's fd.
func (a *Aufs) AfterStop(c *runner.Context) {
	Release(c, a.Upper)
	d, err := trust.OpenDir(filepath.Clean(a.Upper), "--upper")
	if err != nil {
		return
	}
	defer d.Close()
	if st, err := d.Lstat(XinoName); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		if err := d.Remove(XinoName); err != nil {
			c.Log.WithError(err).Warnf("could not remove AuFS's xino file %s", d.Join(XinoName))
		}
	}
}
