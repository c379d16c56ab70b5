package runner

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

// stop runs after the container's init exited, while LXC's monitor still
// holds the container's namespaces. It enters the mount namespace and
// detaches every mount the hook made there (after pivot_root that is the
// container's "/" itself), deepest first. Then nothing but a process
// still inside the namespace can keep the layers, and their loop devices,
// alive: a bind mount of the namespace file, or a stray fd on it, no
// longer can.
func stop(b Backend, c *Context) {
	if c.Inv.MountNS == "" {
		c.Log.Warn("LXC passed no mount namespace to the stop hook; nothing to unmount there (post-stop still checks the loop devices)")
		return
	}
	rec, err := c.Run.Load()
	if err != nil {
		c.Log.WithError(err).Warn("unreadable runtime state; unmounting by mount source only")
	}
	devs := loopDevNumbers(rec)

	var failed []string
	err = mount.InNamespace(c.Inv.MountNS, func(hostProc *os.File) error {
		mounts, err := mount.ThreadMounts(hostProc)
		if err != nil {
			return err
		}
		ours := selectOurs(mounts, b.MountSource(), c.Run.Path, devs)
		for _, m := range ours {
			if err := mount.Unmount(m.Mountpoint); err != nil {
				failed = append(failed, err.Error())
				continue
			}
			c.Log.WithField("fstype", m.FSType).Debugf("detached %s in the container's mount namespace", m.Mountpoint)
		}
		return nil
	})
	if err != nil {
		c.Log.WithError(err).Error("could not enter the container's mount namespace to unmount its layers")
		return
	}
	if len(failed) > 0 {
		c.Log.Errorf("unmounting in the container's mount namespace: %s", strings.Join(failed, "; "))
	}
}

// selectOurs picks the mounts a hook made: its union mount (by source
// name, wherever it is, "/" after pivot_root), anything under its runtime
// directory, and any filesystem on one of its loop devices. Deepest first.
func selectOurs(mounts []*mountinfo.Info, source, runDir string, devs map[string]bool) []*mountinfo.Info {
	var ours []*mountinfo.Info
	for _, m := range mounts {
		if m.Source == source || pathIn(m.Mountpoint, runDir) || devs[fmt.Sprintf("%d:%d", m.Major, m.Minor)] {
			ours = append(ours, m)
		}
	}
	sort.SliceStable(ours, func(i, j int) bool {
		di, dj := depth(ours[i].Mountpoint), depth(ours[j].Mountpoint)
		if di != dj {
			return di > dj
		}
		return ours[i].ID > ours[j].ID // stacked on the same path: newest first
	})
	return ours
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// loopDevNumbers returns "major:minor" of the loop devices in rec.
func loopDevNumbers(rec *state.Record) map[string]bool {
	devs := map[string]bool{}
	if rec == nil {
		return devs
	}
	for _, l := range append(append([]state.Loop{}, rec.Loops...), rec.Leftovers...) {
		var st unix.Stat_t
		if unix.Stat(l.Device, &st) == nil {
			devs[fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))] = true
		}
	}
	return devs
}

// HeldBy says who holds loop device l, for a log line: the container
// whose hook attached it (from the runtime records under runRoot),
// processes in the mount namespace of the run that attached it, processes
// with the device open or a filesystem on it mounted, and bind mounts of
// that namespace. It returns "" when it finds no one.
func HeldBy(runRoot string, l state.Loop) string {
	var parts []string
	if rec, owner := state.Owner(runRoot, l.Number, l.Diskseq); rec != nil {
		parts = append(parts, fmt.Sprintf("attached for container %s (%s)", rec.Container, rec.ConfigFile))
		if l.MountNS == 0 {
			l.MountNS = owner.MountNS
		}
	}
	var ps []holders.Process
	var binds []string
	if l.MountNS != 0 {
		ps = append(ps, holders.InMountNS(l.MountNS)...)
		binds = holders.NamespaceBindMounts(l.MountNS)
	}
	ps = append(ps, holders.WithFileOpen(l.Device)...)
	var st unix.Stat_t
	if unix.Stat(l.Device, &st) == nil {
		ps = append(ps, holders.WithMountOf(int(unix.Major(st.Rdev)), int(unix.Minor(st.Rdev)), "")...)
	}
	ps = dedupe(ps)
	if len(ps) > 0 {
		const most = 5
		more := ""
		if len(ps) > most {
			more = fmt.Sprintf(" and %d more", len(ps)-most)
			ps = ps[:most]
		}
		parts = append(parts, "held by "+holders.Join(ps)+more)
	}
	if len(binds) > 0 {
		parts = append(parts, "its mount namespace is bind-mounted at "+strings.Join(binds, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

func dedupe(ps []holders.Process) []holders.Process {
	seen := map[int]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p.PID] {
			seen[p.PID] = true
			out = append(out, p)
		}
	}
	return out
}

// postStop runs last, after LXC closed the container's namespaces (also
// after a failed start). It checks each loop device the hook attached for
// this container: detached, or reused by someone else since (another disk
// sequence number), is fine; still bound is an error naming the holders.
// Devices still held are kept in the record, so the next start knows them.
func postStop(b Backend, c *Context) {
	rec, err := c.Run.Load()
	if err != nil {
		c.Log.WithError(err).Error("unreadable runtime state; cannot verify the loop devices")
		return
	}
	if ps, ok := b.(PostStopper); ok {
		defer ps.PostStop(c)
	}
	if rec == nil {
		return // never started, or already verified
	}
	for _, l := range rec.Loops {
		if l.Shared {
			state.UsersOf(c.Common.RunDir, l.Dev, l.Ino).Remove(c.Run)
		}
	}
	var held []state.Loop
	for _, l := range append(append([]state.Loop{}, rec.Loops...), rec.Leftovers...) {
		if !sameBinding(l) {
			continue
		}
		if l.Shared && usedByOthers(c, l) {
			continue // other containers use it; it goes with the last of them
		}
		// Nothing may hold it any more but an autoclear that has not run;
		// LOOP_CLR_FD settles that, and is verified.
		if err := loop.Detach(l.Number); err == nil {
			c.Log.WithField("device", l.Device).Debug("detached a loop device nothing held")
			continue
		}
		held = append(held, l)
		c.Log.Errorf("loop device %s (%s) is still attached after the container stopped%s; it goes when they end (autoclear is armed)", l.Device, l.Backing, HeldBy(c.Common.RunDir, l))
	}
	if len(held) == 0 {
		if err := c.Run.Remove(rec); err != nil {
			c.Log.WithError(err).Warnf("could not remove the runtime directory %s", c.Run.Path)
		}
		return
	}
	rec.Loops, rec.Leftovers = nil, held
	if err := c.Run.Save(rec); err != nil {
		c.Log.WithError(err).Warn("could not save the runtime state")
	}
}
