package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/identity"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/lxclog"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
	"golang.org/x/sys/unix"
)

// preMount runs in the container's new mount namespace before LXC mounts
// the rootfs: it stacks the layers onto the rootfs directory, which LXC
// then bind-mounts as the container's root. Mounts made here are the
// container's alone (LXC made every shared mount a slave first).
func preMount(b Backend, c *Context) (err error) {
	if err := CheckConfig(c.Common.Config, c.Inv.ConfigFile, b.Program()); err != nil {
		return err
	}
	rootfs := c.Inv.RootfsPath
	if idmap.InUserNS() {
		// An unprivileged container: pre-start built the root as host root
		// and attached it on the rootfs path before LXC copied the host's
		// mounts into this namespace. A pre-mount line written by an
		// earlier version has nothing left to do.
		if isMountRoot(rootfs) && fsTypeOf(rootfs) == "overlayfs" {
			c.Log.Debug("pre-start attached the root; nothing to do at pre-mount")
			return nil
		}
		return fmt.Errorf("this is an unprivileged container (lxc.idmap) and no lxc.hook.pre-start attached its root on %s: its root is built by lxc.hook.pre-start (pre-mount runs as the container's root, which can mount nothing); put the hook line on lxc.hook.pre-start and lxc.hook.stop (%s migrate NAME rewrites the lines)", rootfs, b.Program())
	}
	if err := checkRootfs(rootfs); err != nil {
		return err
	}
	return build(b, c, rootfs, nil)
}

func checkRootfs(rootfs string) error {
	fi, err := os.Stat(rootfs)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rootfs directory %q (lxc.rootfs.path) does not exist: create it, empty; the layered root is mounted onto it", rootfs)
	}
	if err != nil {
		return fmt.Errorf("rootfs directory %q (lxc.rootfs.path): %w", rootfs, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("rootfs %q (lxc.rootfs.path) is not a directory: use dir:/path/to/an/empty/directory", rootfs)
	}
	return nil
}

// build stacks the layers onto target: the rootfs directory in the
// container's mount namespace (privileged, pre-mount), or a mountpoint in a
// private mount namespace of pre-start (u set: unprivileged), where the
// lowers are idmapped first and the writable layer must belong to the
// container's mapped root.
func build(b Backend, c *Context, target string, u *unprivBuild) (err error) {
	rootfs := c.Inv.RootfsPath
	lowers, err := resolveLowers(c, rootfs)
	defer c.closeLowerFiles()
	if err != nil {
		return err
	}

	// The namespace's id, not its inode number: the number is reused as
	// soon as the namespace is gone, and would name another container's
	// processes as holders. A kernel without the ioctl gets 0: no
	// holder is then searched by namespace. An unprivileged container's
	// namespace is known only when its pre-mount takes the root: the
	// handover server records it.
	var nsID uint64
	if u == nil {
		if nsID, err = holders.MountNSID("/proc/self/ns/mnt"); err != nil {
			c.Log.WithError(err).Debug("no mount namespace id; holders are found by their files only")
		}
	}
	c.Record = &state.Record{Container: c.Inv.Name, ConfigFile: c.Inv.ConfigFile}
	if u != nil {
		c.Record.Mountpoints = append(c.Record.Mountpoints, target)
	}
	if prev, err := c.Run.Load(); err != nil {
		c.Log.WithError(err).Warn("ignoring unreadable runtime state of an earlier run")
	} else if prev != nil {
		c.Record.Leftovers = stillAttached(c, append(prev.Loops, prev.Leftovers...))
	}

	defer func() {
		if err != nil {
			c.undo()
		}
	}()

	c.Mark("prepare")
	w, err := b.PrepareWritable(c)
	if err != nil {
		return err
	}
	c.Mark("writable")
	err = checkLayerOwner(w, u)
	if w.Dir != nil {
		w.Dir.Close()
		w.Dir = nil
	}
	if err != nil {
		return err
	}
	for _, l := range lowers {
		if !l.IsImage() {
			if err := checkDisjoint(l.Path, w.Root); err != nil {
				return err
			}
		}
	}

	dirs := make([]string, len(lowers))
	for i, l := range lowers {
		if !l.IsImage() {
			dirs[i] = l.Path
			continue
		}
		if dirs[i], err = mountImageLower(c, i, l); err != nil {
			return err
		}
	}

	c.Mark("lowers")
	if u != nil {
		if dirs, err = u.idmapLowers(c, lowers, dirs); err != nil {
			return err
		}
		c.Mark("idmap")
	}
	if err := b.MountUnion(c, dirs, w, target); err != nil {
		if u != nil {
			return u.unionError(err)
		}
		return err
	}
	c.PushUndo(func() { _ = mount.Unmount(target) })
	if err := identity.Apply(identity.Layer{Root: target, Dir: w.Root, Upper: w.Upper, Config: c.Inv.ConfigFile, Name: c.Inv.Name}, c.Log); err != nil {
		return err
	}

	c.Mark("union")
	killpoint.At("pre-mount:before-save")
	// The mounts made here; stop adds those LXC made of them (the
	// container's "/").
	// (Those of an unprivileged start's private namespace go with it; its
	// stop records the container's.)
	var ids []uint64
	for _, p := range append([]string{rootfs}, c.Record.Mountpoints...) {
		if u != nil {
			break
		}
		if id, _, err := holders.MountID(p); err == nil {
			ids = append(ids, id)
		}
	}
	unionDev := ""
	var st unix.Stat_t
	if unix.Stat(target, &st) == nil {
		unionDev = fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	for i := range c.Record.Loops {
		c.Record.Loops[i].MountNSID = nsID
		c.Record.Loops[i].Mounts = ids
		c.Record.Loops[i].UnionDev = unionDev
	}
	if err := c.Run.Save(c.Record); err != nil {
		return fmt.Errorf("saving runtime state in %q: %w", c.Run.Path, err)
	}
	c.Mark("save")
	c.Log.WithField("lowers", len(lowers)).WithField("upper", w.Upper).Debugf("mounted the layered root on %s", target)
	lxclog.MarkStarted(c.Inv.ConfigFile, c.Inv.Name, c.Log)
	return nil
}

// CheckConfig refuses a start from a config other than the one the hook
// line was written for (--config): such a config was copied (cp, or an
// LXC tool without the hook's clone step) and its layer was not, so the
// start would silently boot the bare template with a new empty layer, or
// write the other container's layer.
func CheckConfig(written, running, program string) error {
	if written == "" || running == "" || filepath.Clean(written) == filepath.Clean(running) {
		return nil
	}
	if a, err := os.Stat(written); err == nil {
		if b, err := os.Stat(running); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	if _, err := os.Stat(written); errors.Is(err, os.ErrNotExist) {
		// Nothing is at the old place: the directory was moved (a new
		// lxcpath, another disk), not copied; say that remedy first.
		return fmt.Errorf("this container's hook lines were written for the config %s (--config), which no longer exists, not for %s: if the container's directory was moved, with its layer, set --config to %s on every hook line; if its config was copied without the writable layer, remove it with lxc-destroy and copy containers with \"%s copy SRC DST\"", written, running, running, program)
	}
	return fmt.Errorf("this container's hook lines were written for the config %s (--config), not for %s: the config was copied without the writable layer (LXC's tools copy no layer unless the config has the lxc.hook.clone line init writes), so a start would run without the container's data or write another container's layer; copy containers with \"%s copy SRC DST\" (remove this one first with lxc-destroy), or, if you moved the container's directory yourself together with its layer, set --config to %s on every hook line", written, running, program, running)
}

// closeLowerFiles closes the template files no mount took (a build that
// failed before mounting them).
func (c *Context) closeLowerFiles() {
	for i, f := range c.lowerFiles {
		f.Close()
		delete(c.lowerFiles, i)
	}
}

// resolveLowers checks the lowers; the image files it checked stay open
// in c.lowerFiles (by index), for mountImageLower to use rather than the
// names again.
func resolveLowers(c *Context, rootfs string) ([]layer.Lower, error) {
	if len(c.Common.Lowers) == 0 {
		// The extracted template in lxc.rootfs.path is the lower; the
		// layered root is mounted over it and it is never written.
		return []layer.Lower{{Path: rootfs}}, nil
	}
	lowers := make([]layer.Lower, 0, len(c.Common.Lowers))
	c.lowerFiles = map[int]*os.File{}
	for i, p := range c.Common.Lowers {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("lower %q is not an absolute path", p)
		}
		l, f, err := layer.ResolveLowerOpen(filepath.Clean(p))
		if err != nil {
			return nil, err
		}
		if f != nil {
			c.lowerFiles[i] = f
		}
		lowers = append(lowers, l)
	}
	return lowers, nil
}

// checkDisjoint refuses a writable layer inside a lower or the reverse:
// overlayfs refuses such layers too, but says so only in dmesg.
func checkDisjoint(lower, writable string) error {
	l, err := filepath.EvalSymlinks(lower)
	if err != nil {
		return fmt.Errorf("lower %q: %w", lower, err)
	}
	w, err := filepath.EvalSymlinks(writable)
	if err != nil {
		return fmt.Errorf("writable layer %q: %w", writable, err)
	}
	if pathIn(w, l) || pathIn(l, w) {
		return fmt.Errorf("writable layer %q and lower %q overlap: put the writable layer outside the template (and the template outside it)", writable, lower)
	}
	return nil
}

// mountImageLower mounts a template image read-only on a private
// mountpoint in the runtime directory, through the one read-only loop
// device all containers of this template share (attached if none is). The
// device has autoclear: it goes with the last mount of it, i.e. with the
// last container using the template.
func mountImageLower(c *Context, i int, l layer.Lower) (string, error) {
	// Count this container among the device's users before adopting it:
	// a post-stop of another container between the adoption and a later
	// Add would see no user left, try to detach the device this start is
	// about to mount, and log a spurious leftover.
	users := state.UsersOf(l.Dev, l.Ino)
	if err := users.Add(c.Run); err != nil {
		return "", fmt.Errorf("runtime state %s: %w", users.Path, err)
	}
	c.PushUndo(func() { users.Remove(c.Run) })
	// The file resolveLowers checked, not its name again.
	f := c.lowerFiles[i]
	delete(c.lowerFiles, i)
	if f == nil {
		var err error
		if f, err = l.Open(); err != nil {
			return "", err
		}
	}
	dev, adopted, err := loop.AttachShared(f, state.TemplatesDir)
	f.Close() // the loop device holds its own reference
	if err != nil {
		return "", fmt.Errorf("lower %q: attaching a loop device: %w", l.Path, err)
	}
	// Until mount(2) returns, only this fd keeps the autoclear device.
	defer dev.Close()

	mp, err := c.Run.Mountpoint(fmt.Sprintf("lower%d", i))
	if err != nil {
		return "", err
	}
	c.Record.Mountpoints = append(c.Record.Mountpoints, mp)
	if err := mount.Block(l.FSType, dev.Path, mp, true); err != nil {
		return "", fmt.Errorf("lower %q: %w", l.Path, err)
	}
	c.PushUndo(func() { _ = mount.Unmount(mp) })
	c.Record.Loops = append(c.Record.Loops, state.Loop{
		Device: dev.Path, Number: dev.Number, Diskseq: dev.Diskseq,
		Backing: l.Path, Dev: l.Dev, Ino: l.Ino, Role: "lower", Shared: true,
	})
	c.Log.WithField("device", dev.Path).WithField("shared", adopted).Debugf("lower %s (%s) mounted on %s", l.Path, l.FSType, mp)
	return mp, nil
}

// stillAttached returns the loops of an earlier run that are still bound
// to the same file with the same disk sequence number, i.e. not detached and
// not reused by anyone since; each is logged with its holders.
func stillAttached(c *Context, loops []state.Loop) []state.Loop {
	var left []state.Loop
	for _, l := range loops {
		if !sameBinding(l) || (l.Shared && usedByOthers(c, l)) {
			continue
		}
		left = append(left, l)
		c.Log.Warnf("loop device %s (%s) of an earlier run of this container is still attached%s", l.Device, l.Backing, HeldBy(c.Common.RunDir, l))
	}
	return left
}

// sameBinding reports whether l's device is still bound as recorded.
func sameBinding(l state.Loop) bool {
	st, err := loop.StatusOf(l.Number)
	if err != nil {
		return false
	}
	return st.BackingDev == l.Dev && st.BackingIno == l.Ino && (l.Diskseq == 0 || st.Diskseq == l.Diskseq)
}

// usedByOthers reports whether another container uses the shared
// template device l: then it is in use, not left over.
func usedByOthers(c *Context, l state.Loop) bool {
	return state.UsersOf(l.Dev, l.Ino).Others(c.Run)
}
