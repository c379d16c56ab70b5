package runner

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/handover"
	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/layer"
	"github.com/lxc-hooks/lxc-hooks/pkg/lxclog"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/runfile"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

// Unprivileged containers (lxc.idmap, started by root).
//
// Their pre-mount runs as the container's root (host uid 100000 with the
// usual mapping): it can attach no loop device, mount no block filesystem
// and read no root-only file. So the root is built earlier, by
// lxc.hook.pre-start, which runs as host root in the host's namespaces:
// in a private mount namespace of its own (nothing is ever mounted in the
// host's), it mounts the template images and the writable layer as the
// privileged pre-mount does, clones each lower as an idmapped mount (host
// uid 0 shows as the container's root), stacks overlayfs over them, and
// keeps a detached clone of that overlay mount. A handover server (package
// handover) passes it to pre-mount, which attaches it onto the rootfs
// directory in the container's mount namespace. When pre-start's private
// namespace goes, so do its mounts: the detached root, then the
// container's namespace, are the only things holding the layers.
// stop and post-stop work as for privileged containers.

// MinKernel is what the unprivileged mode needs: overlayfs over idmapped
// layers (5.19); idmapped mounts themselves arrived in 5.12, and each
// template filesystem must support them (probed at every start).
const MinKernel = "5.19"

type unprivBuild struct {
	m *idmap.Mapping
	// userns delivers the user namespace with the container's mapping,
	// made while the layers are mounted (it starts a process).
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

// preStart builds an unprivileged container's root; for a privileged one
// it has nothing to do (the same hook line may be on every key).
func preStart(b Backend, c *Context) error {
	m, err := ConfigMapping(c.Inv.ConfigFile)
	if err != nil {
		return err
	}
	if m == nil {
		c.Log.Debug("no lxc.idmap: a privileged container, built at pre-mount")
		return nil
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
	if err := reachable("rootfs directory", rootfs, uid, gid, false); err != nil {
		return err
	}
	// The container's root must reach its socket: search permission only,
	// no listing; the socket itself is its alone (0600, its owner).
	if err := searchable(c.Common.RunDir, c.Run.Path); err != nil {
		return err
	}
	if err := reachable("runtime directory (--run-dir)", c.Run.Path, uid, gid, true); err != nil {
		return err
	}
	// An earlier start's server, if any, must not serve this start.
	if handover.Stop(c.Run.Path) {
		c.Log.Warn("ended the handover server of an earlier start that was still waiting")
	}
	// The handover server starts while the layers mount; it runs in a
	// user namespace with the container's mapping, which is also the idmap
	// of the layers: one process for both.
	nsc := make(chan usernsResult, 1)
	u := &unprivBuild{m: m, userns: nsc}
	type spawned struct {
		p   *handover.Pending
		err error
	}
	srv := make(chan spawned, 1)
	go func() {
		args := []string{"--name", c.Inv.Name, "--config", c.Inv.ConfigFile, "--dir", c.Run.Path,
			"--log-level", c.Common.LogLevel}
		if c.LogFile != nil {
			args = append(args, "--log-fd", "5")
		}
		uidMaps, gidMaps := idmap.SysMaps(m)
		p, err := handover.Spawn("/proc/self/exe", c.Run.Path, uid, gid, handover.Maps{UID: uidMaps, GID: gidMaps}, c.LogFile, args)
		if err != nil {
			nsc <- usernsResult{nil, fmt.Errorf("starting the handover server in a user namespace with the container's lxc.idmap (%s): %w", m, err)}
		} else {
			nsc <- usernsResult{p.UserNS, nil}
		}
		srv <- spawned{p, err}
	}()
	defer func() {
		if f, err := u.userNS(); err == nil {
			f.Close()
		}
	}()
	server := func() (*handover.Pending, error) {
		s := <-srv
		return s.p, s.err
	}

	var rootFD int
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
			return fmt.Errorf("open_tree %s: %w", target, err)
		}
		return nil
	})
	if err != nil {
		// Its private namespace is gone, so are the mounts: the mountpoints
		// are empty directories again.
		if c.Record != nil {
			for _, mp := range c.Record.Mountpoints {
				os.Remove(mp)
			}
		}
		if target != "" {
			os.Remove(target)
		}
		if p, serr := server(); serr == nil {
			p.Abort()
		}
		handover.Stop(c.Run.Path)
		os.Remove(c.Run.Path) // only if empty: an earlier run's record stays
		return err
	}
	defer unix.Close(rootFD)
	p, err := server()
	if err != nil {
		return err
	}
	if err := p.Send(rootFD); err != nil {
		return err
	}
	c.Log.WithField("idmap", m.String()).Debug("unprivileged root prepared; waiting for pre-mount to take it")
	return nil
}

// reachable checks that the container's root (host uid:gid) may search
// every directory on the way to dir (and dir itself with self): its
// pre-mount attaches the root onto the rootfs directory and takes it from
// the runtime directory, and could only say on stderr that it cannot.
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
			return fmt.Errorf("%s %q is out of reach of the container's root (host uid %d): %s (mode %04o, owner %d:%d) gives it no search permission; allow it, e.g. chmod o+x %s (LXC's own unprivileged containers need the same)", what, dir, uid, p, st.Mode&0o7777, st.Uid, st.Gid, p)
		}
		if p == "/" {
			return nil
		}
	}
}

// searchable adds search permission for others to dirs (the runtime
// root and the container's directory), which are 0700 otherwise.
func searchable(dirs ...string) error {
	for _, d := range dirs {
		// Checked like every runtime directory (no symlink, ours, not
		// writable by others) before the chmod: a link planted there
		// would have it give search permission to its target (/root).
		if err := runfile.Dir(d); err != nil {
			return err
		}
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("runtime directory %q: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("runtime directory %q: %w", d, err)
			}
		}
	}
	return nil
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
	if u == nil {
		return idmap.CheckLayer(w.Root, w.Upper, w.Work, nil)
	}
	if layer.MarkerOf(w.Root) == layer.Aufs {
		return fmt.Errorf("layer %q is an AuFS layer: AuFS cannot serve an unprivileged container (lxc.idmap); start it privileged", w.Root)
	}
	return idmap.CheckLayer(w.Root, w.Upper, w.Work, u.m)
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

// attachPrepared is an unprivileged container's pre-mount: it takes the
// root pre-start prepared and attaches it onto the rootfs directory, in
// the container's mount namespace. What goes wrong is sent back to the
// server, which writes it to the container's LXC log (this process, the
// container's root, cannot open it).
func attachPrepared(c *Context, rootfs string, started time.Time) error {
	fd, conn, err := handover.Receive(c.Run.Path, 10*time.Second)
	if errors.Is(err, handover.ErrNoServer) {
		return fmt.Errorf("this is an unprivileged container (lxc.idmap) and no lxc.hook.pre-start prepared its root (%v): put the same hook line on lxc.hook.pre-start as on lxc.hook.pre-mount", err)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = checkRootfs(rootfs)
	if err == nil {
		if err = idmap.Attach(fd, rootfs); err != nil {
			err = fmt.Errorf("attaching the prepared root onto %s: %w", rootfs, err)
		}
	}
	conn.Reply(err, time.Since(started))
	if err == nil {
		c.Log.Debugf("attached the prepared root onto %s", rootfs)
	}
	return err
}

// serveHandover is the handover server's main (see package handover).
func serveHandover(b Backend, args []string, stderr io.Writer) int {
	started := time.Now()
	fs := flag.NewFlagSet(handover.ServeArg, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	uid := fs.Uint("uid", 0, "")
	name := fs.String("name", "", "")
	config := fs.String("config", "", "")
	dir := fs.String("dir", "", "")
	logFD := fs.Int("log-fd", -1, "")
	level := fs.String("log-level", "", "")
	if err := fs.Parse(args); err != nil || *dir == "" {
		fmt.Fprintf(stderr, "%s: %s is internal to the hooks\n", b.Program(), handover.ServeArg)
		return 2
	}
	// The LXC log comes open from pre-start: this process, in a user
	// namespace of its own, may not look into LXC's /proc entries for it.
	var logFile *os.File
	if *logFD >= 0 {
		logFile = os.NewFile(uintptr(*logFD), "lxc log")
	}
	log, closer, err := lxclog.New(lxclog.Options{
		Program: b.Program(), Category: b.Category(), Container: *name, Hook: string(hook.PreMount),
		ConfigFile: *config, EnvLevel: os.Getenv("LXC_LOG_LEVEL"), FlagLevel: *level, File: logFile, Stderr: stderr,
	})
	if err != nil {
		return 1
	}
	defer closer.Close()
	// The container's mount namespace, known now: recorded so that
	// post-stop can name what is still inside it after a stop.
	var nsID uint64
	onPeer := func(nsFD int) {
		nsID, _ = holders.MountNSID("/proc/self/fd/" + strconv.Itoa(nsFD))
	}
	res, err := handover.Serve(uint32(*uid), started.Add(handover.Timeout), func(why string) { log.Warn(why) }, onPeer)
	if errors.Is(err, handover.ErrAborted) {
		return 0 // pre-start failed, and said why
	}
	if err != nil {
		log.Warn(err)
		return 1
	}
	if res.PeerErr != "" {
		log.Error(res.PeerErr)
		return 1
	}
	// pre-mount's own "done" line, which it cannot write (see runner.Main).
	log.WithField("took", res.PeerTook).Debugf("%s done", hook.PreMount)
	if nsID != 0 {
		run := state.Dir{Path: *dir}
		if rec, err := run.Load(); err == nil && rec != nil {
			for i := range rec.Loops {
				rec.Loops[i].MountNSID = nsID
			}
			if err := run.Save(rec); err != nil {
				log.WithError(err).Warn("could not record the container's mount namespace")
			}
		}
	}
	os.Remove(*dir + "/" + handover.Socket)
	os.Remove(*dir + "/" + handover.PIDFile)
	return 0
}

// checkPreStartConfigured explains, at post-stop, why an unprivileged
// container's pre-mount failed when pre-start lacks this hook: pre-mount
// could only say so on stderr, which LXC logs at DEBUG.
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
	c.Log.Errorf("this container is unprivileged (lxc.idmap) and lxc.hook.pre-start does not run %s: unprivileged containers need the same hook line on lxc.hook.pre-start as on lxc.hook.pre-mount, lxc.hook.stop and lxc.hook.post-stop", b.Program())
}
