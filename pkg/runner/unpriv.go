package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

// Unprivileged containers (lxc.idmap, started by root).
//
// Their pre-mount runs as the container's root (host uid 100000 with the
// usual mapping): it can attach no loop device, mount no block filesystem
// and read no root-only file. So the root is built earlier, by
// lxc.hook.pre-start, which runs as host root in the host's namespaces,
// before LXC makes the container's: in a private mount namespace of its own
// it mounts the template images and the writable layer as the privileged
// pre-mount does, clones each lower as an idmapped mount (host uid 0 shows
// as the container's root), stacks overlayfs over them, and attaches a
// detached clone of that overlay mount onto the rootfs directory in the
// host's mount namespace. LXC's dir rootfs then takes it: the container's
// mount namespace is a copy of the host's, and LXC bind-mounts the rootfs
// path from there. No other hook process runs at start: no pre-mount, no
// server. Only that one overlay mount is ever in the host's namespace (the
// images, lowers and idmapped clones stay in pre-start's private one, which
// goes when it ends: the overlay holds them). It is made shared: copies
// of it that mount namespaces made meanwhile get (systemd's services, the
// hooks' private namespaces) are its slaves, and go when the stop hook
// unmounts it.
// The stop hook detaches the container's root inside its namespace, then
// the host's mount (by its unique mount id), then verifies the loop devices.

// MinKernel is what the unprivileged mode needs: overlayfs over idmapped
// layers (5.19); idmapped mounts themselves arrived in 5.12, and each
// template filesystem must support them (probed at every start).
const MinKernel = "5.19"

type unprivBuild struct {
	m *idmap.Mapping
	// userns delivers the user namespace with the container's mapping
	// (pinned, or made while the layers are mounted: that starts a
	// process).
	userns <-chan usernsResult
	ns     *os.File
}

type usernsResult struct {
	f   *os.File
	err error
}

// userNS waits for the user namespace.
func (u *unprivBuild) userNS() (*os.File, error) {
	if u.ns == nil {
		r := <-u.userns
		if r.err != nil {
			return nil, r.err
		}
		u.ns = r.f
	}
	return u.ns, nil
}

// ConfigMapping reads a container config's lxc.idmap; nil for a
// privileged container.
func ConfigMapping(configFile string) (*idmap.Mapping, error) {
	f, err := os.Open(configFile)
	if err != nil {
		return nil, fmt.Errorf("container config %q: %w", configFile, err)
	}
	defer f.Close()
	m, err := idmap.ParseLXC(hook.ConfigValues(f, idmap.ConfigKey)[idmap.ConfigKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", configFile, err)
	}
	return m, nil
}

// preStart builds an unprivileged container's root and attaches it onto
// the rootfs directory in the host's mount namespace; for a privileged
// container it has nothing to do (pre-mount builds its root inside the
// container's namespace).
func preStart(b Backend, c *Context) (err error) {
	m, err := ConfigMapping(c.Inv.ConfigFile)
	if err != nil {
		return err
	}
	if m == nil {
		c.Log.Debug("no lxc.idmap: a privileged container, built at pre-mount")
		return nil
	}
	if err := idmap.CheckHost(m, idmap.SystemFiles); err != nil {
		return err
	}
	if err := CheckConfig(c.Common.Config, c.Inv.ConfigFile, b.Program()); err != nil {
		return err
	}
	rootfs := c.Inv.RootfsPath
	if err := checkRootfs(rootfs); err != nil {
		return err
	}
	uid, _ := m.RootUID()
	gid, _ := m.RootGID()
	// LXC bind-mounts the rootfs path as the container's root.
	if err := reachable("rootfs directory", rootfs, uid, gid, false); err != nil {
		return err
	}
	// While the container runs its root is mounted there on the host: no
	// other local user may reach it (they could run the container's setuid
	// programs, which belong to the container's root on the host).
	if err := guardRootfs(c, rootfs, gid); err != nil {
		return err
	}
	prev, err := c.Run.Load()
	if err != nil {
		c.Log.WithError(err).Warn("ignoring unreadable runtime state of an earlier run")
		prev = nil
	}
	if err := detachLeftoverRoot(c, prev, rootfs); err != nil {
		return err
	}

	// The user namespace for the idmap is made while the layers mount.
	nsc := make(chan usernsResult, 1)
	u := &unprivBuild{m: m, userns: nsc}
	go func() {
		f, note, err := idmap.PinnedUserNS(idmap.UserNSDir, "/proc/self/exe", m)
		if note != "" {
			c.Log.Debug(note)
		}
		nsc <- usernsResult{f, err}
	}()
	defer func() {
		if f, err := u.userNS(); err == nil {
			f.Close()
		}
	}()

	var rootFD int = -1
	var target string
	err = mount.InPrivateNamespace(func() (err error) {
		if target, err = c.Run.Mountpoint("root"); err != nil {
			return err
		}
		if err := build(b, c, target, u); err != nil {
			return err
		}
		// A detached clone of the layered root: all that outlives this
		// namespace, and all that holds the layers once it is gone.
		rootFD, err = unix.OpenTree(unix.AT_FDCWD, target, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			c.undo()
			return fmt.Errorf("open_tree %s: %w", target, err)
		}
		return nil
	})
	if err != nil {
		// Its private namespace is gone, so are the mounts: the mountpoints
		// are empty directories again.
		if c.Record != nil {
			c.Run.Remove(c.Record)
		} else if target != "" {
			os.Remove(target)
		}
		os.Remove(c.Run.Path) // only if empty: an earlier run's record stays
		return err
	}
	defer unix.Close(rootFD)
	return attachHostRoot(c, rootFD, rootfs)
}

// attachHostRoot attaches the detached root onto the rootfs directory in
// the host's mount namespace (this thread's: only pre-start's private
// namespace thread left it). The mount's unique id is saved first: a
// start killed after the attach leaves a record that names the mount, so
// the stop hook, or the next start, detaches exactly that one.
func attachHostRoot(c *Context, rootFD int, rootfs string) error {
	var st unix.Statx_t
	if err := unix.Statx(rootFD, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE, &st); err != nil || st.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		c.undoHost()
		return fmt.Errorf("the unique id of the prepared root mount (statx STATX_MNT_ID_UNIQUE, Linux 6.8 or newer; this kernel: %s): %v", kernelRelease(), err)
	}
	c.Record.HostRoot = &state.HostMount{Path: rootfs, MountID: st.Mnt_id, Dev: fmt.Sprintf("%d:%d", st.Dev_major, st.Dev_minor)}
	if err := c.Run.Save(c.Record); err != nil {
		c.undoHost()
		return fmt.Errorf("saving runtime state in %q: %w", c.Run.Path, err)
	}
	killpoint.At("pre-start:before-attach")
	if err := unix.MoveMount(rootFD, "", unix.AT_FDCWD, rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		c.Record.HostRoot = nil
		c.undoHost()
		return fmt.Errorf("attaching the prepared root onto %s: %w", rootfs, err)
	}
	// Shared, even under a private parent (a host without systemd):
	// every mount namespace made while the container runs starts with a
	// copy of it, and one made as a slave (systemd's services, the hooks'
	// own private namespaces) then gets the stop hook's unmount too,
	// instead of keeping the container's layers.
	if err := unix.Mount("", rootfs, "", unix.MS_SHARED, ""); err != nil {
		c.Log.WithError(err).Warnf("could not make the root on %s shared; mount namespaces made while the container runs may keep a copy of it", rootfs)
	}
	killpoint.At("pre-start:after-attach")
	c.Mark("attach")
	c.Log.WithField("mount_id", c.Record.HostRoot.MountID).Debugf("attached the unprivileged root onto %s for LXC to take", rootfs)
	return nil
}

// undoHost takes back, after a failed attach, what the build left outside
// its private namespace (a template device's user entry, the runtime
// record): its mounts went with that namespace.
func (c *Context) undoHost() {
	if c.Record == nil {
		return
	}
	for _, l := range c.Record.Loops {
		if l.Shared {
			state.UsersOf(l.Dev, l.Ino).Remove(c.Run)
		}
	}
	c.Run.Remove(c.Record)
}

// detachLeftoverRoot detaches the root an earlier run of this container
// left attached on the host (LXC's monitor was killed: no stop hook ran),
// found by the unique mount id its record gives. Anything else mounted on
// the rootfs directory is refused: the root would be stacked on it.
func detachLeftoverRoot(c *Context, prev *state.Record, rootfs string) error {
	if prev != nil && prev.HostRoot != nil {
		if gone, err := DetachHostMount(*prev.HostRoot); err != nil {
			return fmt.Errorf("the root of an earlier run of this container is still mounted on %s: %w", rootfs, err)
		} else if !gone {
			c.Log.Warnf("the root of an earlier run of this container was still mounted on %s (no stop hook ran: LXC's monitor was killed?); detached it", rootfs)
			// Copies of it that mount namespaces made meanwhile hold go
			// by themselves: waited for, as the stop hook would have.
			var own []state.Loop
			for _, l := range append(append([]state.Loop{}, prev.Loops...), prev.Leftovers...) {
				if sameBinding(l) && !(l.Shared && usedByOthers(c, l)) {
					own = append(own, l)
				}
			}
			waitTransient(c, own)
		}
	}
	if isMountRoot(rootfs) {
		return fmt.Errorf("rootfs directory %q (lxc.rootfs.path) has something mounted on it that is not this container's root: unmount it (umount %s); the hook mounts the layered root there", rootfs, rootfs)
	}
	return nil
}

// DetachHostMount detaches the host's mount m if the mount on m.Path is
// still that very mount (its unique id); gone says it was not there.
func DetachHostMount(m state.HostMount) (gone bool, err error) {
	id, _, err := holders.MountID(m.Path)
	if err != nil || id != m.MountID {
		return true, nil
	}
	if err := unix.Unmount(m.Path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
		return false, &mount.Error{Op: "umount", Target: m.Path, Err: err}
	}
	return false, nil
}

// isMountRoot reports whether path is the root of a mount (something is
// mounted on it).
func isMountRoot(path string) bool {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, 0, &st) != nil {
		return false
	}
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// reachable checks that the container's root (host uid:gid) may search
// every directory on the way to dir (and dir itself with self): LXC
// bind-mounts the rootfs path as the container's root, and says only
// "Permission denied" when it cannot.
func reachable(what, dir string, uid, gid uint32, self bool) error {
	for p := dir; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return fmt.Errorf("%s %q: %s: %w", what, dir, p, err)
		}
		var x uint32 = 0o001
		switch {
		case st.Uid == uid:
			x = 0o100
		case st.Gid == gid:
			x = 0o010
		}
		if st.Mode&x == 0 && (p != dir || self) {
			return fmt.Errorf("%s %q is out of reach of the container's root (host uid %d): %s (mode %04o, owner %d:%d) gives it no search permission; allow it by group, e.g. chgrp %d %s && chmod g+x %s (LXC's own unprivileged containers need the same)", what, dir, uid, p, st.Mode&0o7777, st.Uid, st.Gid, gid, p, p)
		}
		if p == "/" {
			return nil
		}
	}
}

// guardRootfs makes sure no local user but root and the container's root
// can reach the rootfs directory, on which the container's root is mounted
// on the host while it runs: every directory above it searchable by
// "others" would let any user in. The layout earlier versions of init
// wrote (the container's directory root:root 0711) is tightened to
// root:GID 0710 (search by the container's root group only), as LXC itself
// keeps an unprivileged container's directory closed to others (0770, its
// root's); any other open layout is refused with the fix.
func guardRootfs(c *Context, rootfs string, gid uint32) error {
	dirs := []string{}
	for p := filepath.Dir(rootfs); ; p = filepath.Dir(p) {
		dirs = append(dirs, p)
		if p == "/" {
			break
		}
	}
	for _, p := range dirs {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("rootfs directory %q: %s: %w", rootfs, p, err)
		}
		if st.Mode&0o001 == 0 {
			return nil // others stop here
		}
	}
	ctrDir := dirs[0]
	var st unix.Stat_t
	if unix.Lstat(ctrDir, &st) == nil && st.Uid == 0 && st.Gid == 0 && st.Mode&0o7777 == 0o711 &&
		ctrDir == filepath.Dir(c.Inv.ConfigFile) {
		fd, err := unix.Open(ctrDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			defer unix.Close(fd)
			path := fmt.Sprintf("/proc/self/fd/%d", fd)
			if err = unix.Chown(path, 0, int(gid)); err == nil {
				err = unix.Chmod(path, 0o710)
			}
		}
		if err != nil {
			return fmt.Errorf("the container's directory %s is open to every local user (mode 0711), and the container's root is mounted in it while it runs; closing it (chgrp %d, chmod 0710) failed: %w", ctrDir, gid, err)
		}
		c.Log.Warnf("the container's directory %s was open to every local user (mode 0711, as earlier versions of init made it); it is now 0710 root:%d (only the container's root may pass): its root is mounted in it while it runs", ctrDir, gid)
		return nil
	}
	return fmt.Errorf("rootfs directory %q can be reached by every local user (every directory above it is searchable by others), and the container's root is mounted on it while the container runs (its setuid programs belong to the container's root): close one directory to others, e.g. chgrp %d %s && chmod o-rwx %s", rootfs, gid, ctrDir, ctrDir)
}

// idmapLowers replaces each lower by an idmapped clone of it, attached on
// a mountpoint of the private namespace.
func (u *unprivBuild) idmapLowers(c *Context, lowers []layer.Lower, dirs []string) ([]string, error) {
	t0 := time.Now()
	userns, err := u.userNS()
	if err != nil {
		return nil, err
	}
	// How long the build stood still for the server's start (it delivers
	// the user namespace only once it has exec'd): the figure to watch.
	c.Log.WithField("waited", time.Since(t0).Round(10*time.Microsecond)).Debug("user namespace for the idmap ready")
	out := make([]string, len(dirs))
	for i, d := range dirs {
		fd, err := idmap.Clone(d, userns)
		if err != nil {
			if errors.Is(err, idmap.ErrNoIdmap) {
				fs := lowers[i].FSType
				if fs == "" {
					fs = fsTypeOf(d)
				}
				return nil, fmt.Errorf("lower %q: this kernel cannot make an idmapped mount of its %s filesystem (%v), and an unprivileged container (lxc.idmap) sees the template's files as its root's only through one (the template is never chowned); idmapped mounts need Linux 5.12 or newer, overlayfs over them Linux %s, and a filesystem that supports them (this kernel: %s); put the template on one (ext4, xfs, btrfs, or a squashfs or erofs image file), or start the container privileged", lowers[i].Path, fs, err, MinKernel, kernelRelease())
			}
			return nil, fmt.Errorf("lower %q: %w", lowers[i].Path, err)
		}
		mp, err := c.Run.Mountpoint(fmt.Sprintf("idmap%d", i))
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		c.Record.Mountpoints = append(c.Record.Mountpoints, mp)
		err = idmap.Attach(fd, mp)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("lower %q: %w", lowers[i].Path, err)
		}
		c.PushUndo(func() { _ = mount.Unmount(mp) })
		out[i] = mp
	}
	return out, nil
}

// unionError explains an overlayfs that refused idmapped lowers.
func (u *unprivBuild) unionError(err error) error {
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w; an unprivileged container (lxc.idmap) needs overlayfs over idmapped layers, Linux %s or newer (this kernel: %s)", err, MinKernel, kernelRelease())
	}
	return err
}

// checkLayerOwner makes sure the writable layer was written under this
// start's mapping (none for a privileged start): see idmap.CheckLayer.
func checkLayerOwner(w *Writable, u *unprivBuild) error {
	var m *idmap.Mapping
	if u != nil {
		if layer.MarkerOf(w.Root) == layer.Aufs {
			return fmt.Errorf("layer %q is an AuFS layer: AuFS cannot serve an unprivileged container (lxc.idmap); start it privileged", w.Root)
		}
		m = u.m
	}
	if w.Dir != nil {
		return idmap.CheckLayerDir(w.Dir, w.Upper, w.Work, m)
	}
	return idmap.CheckLayer(w.Root, w.Upper, w.Work, m)
}

func fsTypeOf(path string) string {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.SQUASHFS_MAGIC:
		return "squashfs"
	case unix.EROFS_SUPER_MAGIC_V1:
		return "erofs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// checkPreStartConfigured explains, at stop, why an unprivileged
// container did not start when pre-start lacks this hook: its pre-mount,
// the container's root, could only say so on stderr, which LXC logs at
// DEBUG.
func checkPreStartConfigured(b Backend, c *Context) {
	f, err := os.Open(c.Inv.ConfigFile)
	if err != nil {
		return
	}
	v := hook.ConfigValues(f, idmap.ConfigKey, "lxc.hook.pre-start")
	f.Close()
	if len(v[idmap.ConfigKey]) == 0 {
		return
	}
	for _, line := range v["lxc.hook.pre-start"] {
		if strings.Contains(line, b.Program()) {
			return
		}
	}
	c.Log.Errorf("this container is unprivileged (lxc.idmap) and lxc.hook.pre-start does not run %s: an unprivileged container's root is built by lxc.hook.pre-start (its pre-mount runs as the container's root, which can mount nothing): put the hook line on lxc.hook.pre-start and lxc.hook.stop (%s migrate NAME rewrites the lines)", b.Program(), b.Program())
}
