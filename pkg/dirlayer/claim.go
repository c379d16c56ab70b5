package dirlayer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
	"github.com/lxc-hooks/lxc-hooks/pkg/trust"
)

// InUseName is the file in a directory layer that names the container
// using it, from its start hook to its stop hook: two overlayfs mounts on
// one upper directory mix their writes ("undefined behavior", says the
// kernel, and lets it happen).
//
// Unlike an image, a directory has no loop device to keep an flock alive
// for the container's life, and the hook's own process ends with
// pre-mount. So the claim is a record, and it is proven live when read:
// it names the container's mount namespace by its 64-bit id (never
// reused), and a namespace with a process in it, or bind-mounted, is a
// container still running (or still held). A claim whose namespace is gone
// is a crash's leftover (no stop hook ran) and is taken over: a dead
// container never blocks the layer.
const InUseName = "lxc-hook-in-use"

type claim struct {
	Container string `json:"container"`
	Config    string `json:"config"`
	MountNSID uint64 `json:"mount_ns_id"`
	// An unprivileged container's pre-start builds the root in a private
	// mount namespace of its own, gone when the hook ends, before the
	// container's exists: its claim names LXC's monitor instead (the
	// hook's parent, which lives as long as the container), by PID and
	// start time.
	MonitorPID   int    `json:"monitor_pid,omitempty"`
	MonitorStart uint64 `json:"monitor_start,omitempty"`
}

// Claim records the container of c as the user of the layer open as d,
// refusing a layer another live container has claimed. Undone if
// pre-mount fails. The record is read and written through d's fd.
func Claim(c *runner.Context, d *trust.Dir) error {
	dir := d.Path()
	// Serializes claims of this layer (two starts at once, or one taking
	// over a stale claim): held for the few syscalls below only. A copy
	// holds it shared for as long as it copies the layer (LockForCopy):
	// waited for briefly, then refused, as a hook never waits unbounded.
	for deadline := time.Now().Add(claimWait); ; {
		err := unix.Flock(d.Fd(), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("--upper %q: flock: %w", dir, err)
		}
		if time.Now().After(deadline) {
			who := ""
			if ps := holders.WithFileOpen(dir); len(ps) > 0 {
				who = " (held open by " + holders.Join(ps) + ")"
			}
			return fmt.Errorf("--upper %q is locked, by a copy of the container (copy, lxc-copy, lxc-snapshot) or another start, right now%s; the start is refused until that ends", dir, who)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Dropped when the caller closes d: the lock guards this claim only.
	defer unix.Flock(d.Fd(), unix.LOCK_UN)
	if old, err := readClaim(d); err == nil {
		if old.Config != c.Inv.ConfigFile {
			if live, why := old.live(); live {
				return fmt.Errorf("--upper %q is the writable layer of container %s (%s), %s: two containers writing one layer mix their writes, so the start is refused; give this container its own --upper", dir, old.Container, old.Config, why)
			}
		}
		if old.Config != c.Inv.ConfigFile {
			c.Log.Infof("--upper %s: taking over the claim of container %s (%s), which is no longer running", dir, old.Container, old.Config)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		var le *trust.LinkError
		if errors.As(err, &le) {
			return err // planted: refused, left for the sysadmin to see
		}
		c.Log.WithError(err).Warnf("--upper %s: unreadable %s, replaced", dir, InUseName)
	}
	cl := claim{Container: c.Inv.Name, Config: c.Inv.ConfigFile}
	if c.Inv.Type == hook.PreStart {
		cl.MonitorPID = os.Getppid()
		cl.MonitorStart = holders.StartTime(cl.MonitorPID)
	} else {
		cl.MountNSID, _ = holders.MountNSID("/proc/self/ns/mnt")
	}
	b, _ := json.Marshal(cl)
	if err := d.WriteFile(InUseName, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("--upper %q: %w", dir, err)
	}
	c.PushUndo(func() { release(dir, c.Inv.ConfigFile) })
	return nil
}

// claimWait bounds how long a start waits for the layer's lock: another
// start holds it for microseconds, a copy for as long as it copies.
const claimWait = 3 * time.Second

// LockForCopy takes the layer dir's lock shared for a copy of the layer
// and refuses a layer a live container has claimed; unlock releases it. A
// start of the container meanwhile is refused (Claim), so the copy never
// reads a layer that overlayfs is writing. dir must pass package trust's
// rule, as for a start.
func LockForCopy(dir string) (unlock func(), err error) {
	dir = filepath.Clean(dir)
	d, err := trust.OpenDir(dir, "layer")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(d.Fd(), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		d.Close()
		return nil, fmt.Errorf("layer %q is locked by a starting container: stop it first; nothing was copied", dir)
	}
	if old, err := readClaim(d); err == nil {
		if live, why := old.live(); live {
			d.Close()
			return nil, fmt.Errorf("layer %q is in use by container %s (%s), %s: stop it first; nothing was copied", dir, old.Container, old.Config, why)
		}
	}
	return func() { d.Close() }, nil
}

// LockForLiveCopy is LockForCopy for a copy of the running container
// whose config is config (the caller freezes it while it copies): the
// layer may be claimed by that container, and only by it. The copy gets
// the claim file too: the caller removes it there (InUseName), or the
// copy's first start would find the source's claim.
func LockForLiveCopy(dir, config string) (unlock func(), err error) {
	dir = filepath.Clean(dir)
	d, err := trust.OpenDir(dir, "layer")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(d.Fd(), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		d.Close()
		return nil, fmt.Errorf("layer %q is locked by a starting container; nothing was copied", dir)
	}
	if old, err := readClaim(d); err == nil && old.Config != config {
		if live, why := old.live(); live {
			d.Close()
			return nil, fmt.Errorf("layer %q is in use by container %s (%s), %s, not by the container being copied; nothing was copied", dir, old.Container, old.Config, why)
		}
	}
	return func() { d.Close() }, nil
}

// Release drops the container's claim on the layer dir (stop); a
// claim by another container is left alone.
func Release(c *runner.Context, dir string) { release(filepath.Clean(dir), c.Inv.ConfigFile) }

func release(dir, config string) {
	d, err := trust.OpenDir(dir, "--upper")
	if err != nil {
		return // a start refused it: no claim was made
	}
	defer d.Close()
	if old, err := readClaim(d); err == nil && old.Config == config {
		d.Remove(InUseName)
	}
}

func readClaim(d *trust.Dir) (claim, error) {
	var cl claim
	b, err := d.ReadFile(InUseName)
	if err != nil {
		return cl, err
	}
	err = json.Unmarshal(b, &cl)
	return cl, err
}

// live reports whether the claimant still runs, or still has the layer
// mounted, and says which.
func (cl claim) live() (bool, string) {
	if cl.MountNSID == 0 && cl.MonitorPID > 1 && cl.MonitorStart != 0 {
		if holders.StartTime(cl.MonitorPID) == cl.MonitorStart {
			return true, "which is running"
		}
		// An unprivileged container's root stays attached on the host,
		// with this layer in it, when its monitor died before its stop
		// hook ran: its record names that mount. A start checks this
		// from its private mount namespace, a copy of the host's, where
		// the mount has another id but the same filesystem.
		if rec, err := state.For(state.DefaultRoot, cl.Container, cl.Config).Load(); err == nil && rec != nil && rec.HostRoot != nil {
			var st unix.Stat_t
			if unix.Stat(rec.HostRoot.Path, &st) == nil && fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)) == rec.HostRoot.Dev {
				return true, fmt.Sprintf("whose root is still mounted on %s (its stop hook never ran: LXC's monitor was killed; detach it with \"%s release %s\")", rec.HostRoot.Path, filepath.Base(os.Args[0]), cl.Container)
			}
		}
		return false, ""
	}
	if liveNS(cl.MountNSID) {
		return true, "which is running"
	}
	return false, ""
}

// liveNS reports whether the mount namespace with this id still exists:
// a process is in it, or it is bind-mounted.
func liveNS(id uint64) bool {
	if id == 0 {
		// Written where the kernel has no namespace ids: not provable
		// either way; a claim that cannot be proven stale is honoured.
		return true
	}
	return len(holders.InMountNSID(id)) > 0 || len(holders.NamespaceBindMounts(id)) > 0
}
