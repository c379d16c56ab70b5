package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/state"
)

// stop is the one hook process of a container's stop. It runs after the
// container's init exited, while LXC's monitor still holds the container's
// namespaces (and also after a failed start, where they may not exist).
// It enters the mount namespace and detaches every mount the hook made
// there (after pivot_root that is the container's "/" itself), deepest
// first; for an unprivileged container it then detaches the root pre-start
// attached in the host's namespace. Then nothing but a process still
// inside the namespace (or with a file on the layers) can keep the layers,
// and their loop devices, alive: a bind mount of the namespace file, or a
// stray fd on it, no longer can. Last, it verifies that every loop device
// the start attached is gone (finish).
func stop(b Backend, c *Context) {
	rec, err := c.Run.Load()
	if err != nil {
		c.Log.WithError(err).Warn("unreadable runtime state; unmounting by mount source only")
	}
	c.Mark("load")
	if c.Inv.MountNS != "" {
		detachInNamespace(b, c, rec)
	} else {
		c.Log.Debug("LXC passed no mount namespace to the stop hook (the start failed before it existed); nothing to unmount there")
	}
	c.Mark("unmount")
	if rec != nil && rec.HostRoot != nil {
		detachRecordedHostRoot(c, rec)
		c.Mark("host")
	}
	killpoint.At("stop:before-verify")
	finish(b, c, rec, err)
}

// detachRecordedHostRoot detaches an unprivileged container's root from
// the host's mount namespace, if the mount on the rootfs path is still the
// one pre-start attached.
func detachRecordedHostRoot(c *Context, rec *state.Record) {
	gone, err := DetachHostMount(*rec.HostRoot)
	switch {
	case err != nil:
		c.Log.WithError(err).Errorf("could not detach the container's root from %s in the host's mount namespace", rec.HostRoot.Path)
	case !gone:
		c.Log.Debugf("detached the container's root from %s in the host's mount namespace", rec.HostRoot.Path)
	}
}

// detachInNamespace enters the container's mount namespace and detaches
// the hook's mounts there; the ids of what it found, and the namespace's
// own id, go into rec for the holder search.
func detachInNamespace(b Backend, c *Context, rec *state.Record) {
	devs := loopDevNumbers(rec)
	var failed []string
	var ids []uint64
	err := mount.InNamespace(c.Inv.MountNS, func(hostProc *os.File) error {
		mounts, err := mount.ThreadMounts(hostProc)
		if err != nil {
			return err
		}
		ours := selectOurs(mounts, b.MountSource(), c.Run.Path, devs)
		ids = mountIDs(ours)
		killpoint.At("stop:before-unmount")
		root := ""
		for _, m := range ours {
			if m.Mountpoint == "/" {
				root = m.FSType
				continue
			}
			if err := mount.Unmount(m.Mountpoint); err != nil {
				failed = append(failed, err.Error())
				continue
			}
			c.Log.WithField("fstype", m.FSType).Debugf("detached %s in the container's mount namespace", m.Mountpoint)
		}
		if root == "" {
			return nil
		}
		// The container's root is detached by pivoting the namespace into
		// an empty tmpfs and detaching the old root (mount.DetachRoot), not
		// by umount("/"): an unprivileged container's root is locked to its
		// namespace (MNT_LOCKED: pivot_root moved the lock of the copied
		// host root onto it), so umount(2) cannot take it out, whoever
		// asks; and this thread's own root and working directory, which
		// setns put there, would keep a plain lazily detached root alive
		// until the thread is gone, after this hook checked the devices.
		if err := mount.DetachRoot(); err != nil {
			failed = append(failed, fmt.Sprintf("detaching the container's root: %v", err))
			return nil
		}
		c.Log.WithField("fstype", root).Debug("detached the container's root by pivoting its namespace into an empty tmpfs")
		return nil
	})
	if err != nil {
		c.Log.WithError(err).Error("could not enter the container's mount namespace to unmount its layers")
		return
	}
	if len(failed) > 0 {
		c.Log.Errorf("unmounting in the container's mount namespace: %s", strings.Join(failed, "; "))
	}
	if rec == nil {
		return
	}
	// An unprivileged container's namespace did not exist when its
	// pre-start made the record: known now, it names who is still inside.
	nsID, _ := holders.MountNSID(c.Inv.MountNS)
	for i := range rec.Loops {
		rec.Loops[i].Mounts = appendNew(rec.Loops[i].Mounts, ids)
		if rec.Loops[i].MountNSID == 0 {
			rec.Loops[i].MountNSID = nsID
		}
	}
}

// mountIDs returns the unique ids (never reused) of mounts, read from the
// namespace the calling thread is in; a mount covered by another one on
// the same path is skipped (statx sees only the top one).
func mountIDs(ms []*mountinfo.Info) []uint64 {
	var ids []uint64
	for _, m := range ms {
		if unique, old, err := holders.MountID(m.Mountpoint); err == nil && old == uint64(m.ID) {
			ids = append(ids, unique)
		}
	}
	return ids
}

func appendNew(have, add []uint64) []uint64 {
	seen := map[uint64]bool{}
	for _, v := range have {
		seen[v] = true
	}
	for _, v := range add {
		if !seen[v] {
			seen[v] = true
			have = append(have, v)
		}
	}
	return have
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

// Holders is who holds a loop device: the container whose hook attached
// it, and only what is proven to hold it. Processes are named (and may be
// killed by release --kill) only when identified by what the kernel never
// reuses: the 64-bit id of the run's mount namespace, the unique ids of the
// run's mounts, or the device itself while it is verified to be still
// bound as recorded (number and disk sequence number).
type Holders struct {
	Owner string // "attached for container NAME (CONFIG)"
	// Procs hold the device: inside the run's mount namespace, or with a
	// file, directory or mapping on its filesystems, or the device open.
	Procs []holders.Process
	// Mounters are one process per other mount namespace that has the
	// device mounted: named, never killed (it may be the host's init).
	Mounters []holders.Process
	Binds    []string // bind mounts of the run's mount namespace
	// SharedInUse: a template device other containers use now; its
	// device-wide holders are theirs and are not searched.
	SharedInUse bool
}

// FindHolders finds who holds l (see Holders). runRoot is the hooks'
// runtime root (--run-dir).
func FindHolders(runRoot string, l state.Loop) Holders {
	var h Holders
	// A shared template device is in many records: none of them is its
	// owner, and another container's record says nothing of l's holders.
	if rec, owner := state.Owner(runRoot, l.Number, l.Diskseq); rec != nil && !owner.Shared && !l.Shared {
		h.Owner = fmt.Sprintf("attached for container %s (%s)", rec.Container, rec.ConfigFile)
		if l.MountNSID == 0 {
			l.MountNSID = owner.MountNSID
		}
		if len(l.Mounts) == 0 {
			l.Mounts = owner.Mounts
		}
	}
	h.SharedInUse = l.Shared && state.UsersOf(l.Dev, l.Ino).Others(state.Dir{})
	h.Procs = append(h.Procs, holders.InMountNSID(l.MountNSID)...)
	h.Binds = holders.NamespaceBindMounts(l.MountNSID)
	var dev uint64
	if !h.SharedInUse && sameBinding(l) {
		var st unix.Stat_t
		if unix.Stat(l.Device, &st) == nil {
			dev = st.Rdev
		}
	}
	h.Procs = append(h.Procs, holders.WithFilesOn(l.Mounts, dev)...)
	if dev != 0 {
		h.Procs = append(h.Procs, holders.WithFileOpen(l.Device)...)
		h.Mounters = holders.WithMountOf(int(unix.Major(dev)), int(unix.Minor(dev)), "")
		if l.UnionDev != "" {
			// A copy of the container's root that another namespace took
			// (one made while an unprivileged container's root was
			// attached on the host, and cut off from its propagation).
			h.Mounters = append(h.Mounters, holders.WithUnionMounted(l.UnionDev)...)
		}
		// The device was verified before the search; if it was detached
		// and reused meanwhile, what the search found is someone else's.
		if !sameBinding(l) {
			h.Procs = holders.InMountNSID(l.MountNSID)
			h.Procs = append(h.Procs, holders.WithFilesOn(l.Mounts, 0)...)
			h.Mounters = nil
		}
	}
	h.Procs = dedupe(h.Procs)
	h.Mounters = dedupe(h.Mounters)
	return h
}

// HeldBy says who holds loop device l, for a log line ("" when no one is
// found): see FindHolders.
func HeldBy(runRoot string, l state.Loop) string { return FindHolders(runRoot, l).String() }

func (h Holders) String() string {
	var parts []string
	if h.Owner != "" {
		parts = append(parts, h.Owner)
	}
	list := func(ps []holders.Process) string {
		const most = 5
		more := ""
		if len(ps) > most {
			more = fmt.Sprintf(" and %d more", len(ps)-most)
			ps = ps[:most]
		}
		return holders.Join(ps) + more
	}
	if len(h.Procs) > 0 {
		parts = append(parts, "held by "+list(h.Procs))
	}
	if len(h.Mounters) > 0 {
		parts = append(parts, "mounted in the mount namespace of "+list(h.Mounters))
	}
	if len(h.Binds) > 0 {
		parts = append(parts, "its mount namespace is bind-mounted at "+strings.Join(h.Binds, ", "))
	}
	if h.SharedInUse {
		parts = append(parts, "a shared template device other running containers use")
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

func dedupe(ps []holders.Process) []holders.Process {
	seen := map[int]bool{}
	var out []holders.Process
	for _, p := range ps {
		if !seen[p.PID] {
			seen[p.PID] = true
			out = append(out, p)
		}
	}
	return out
}

// postStop is lxc.hook.post-stop, which configs of earlier versions have:
// the stop hook now does all, so it returns at once, unless the stop hook
// did not finish (it was killed, or the line is missing), when it does
// what the stop hook left.
func postStop(b Backend, c *Context) {
	rec, err := c.Run.Load()
	if rec == nil && err == nil {
		return
	}
	if rec != nil && rec.HostRoot != nil {
		detachRecordedHostRoot(c, rec)
	}
	finish(b, c, rec, err)
}

// finish checks each loop device the start attached for this container:
// detached, or reused by someone else since (another disk sequence
// number), is fine; still bound is an error naming the holders. Devices
// still held are kept in the record, so the next start knows them.
// Otherwise the record goes. Idempotent: with no record it has nothing to
// verify.
func finish(b Backend, c *Context, rec *state.Record, loadErr error) {
	if loadErr != nil {
		c.Log.WithError(loadErr).Error("unreadable runtime state; cannot verify the loop devices")
		return
	}
	if as, ok := b.(AfterStopper); ok {
		defer as.AfterStop(c)
	}
	if rec == nil {
		checkPreStartConfigured(b, c)
		return // never started, or already verified
	}
	for _, l := range rec.Loops {
		if l.Shared {
			state.UsersOf(l.Dev, l.Ino).Remove(c.Run)
		}
	}
	killpoint.At("stop:before-detach")
	var bound []state.Loop
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
		bound = append(bound, l)
	}
	c.Mark("verify")
	var held []state.Loop
	for _, l := range waitTransient(c, bound) {
		held = append(held, l)
		c.Log.Errorf("loop device %s (%s) is still attached after the container stopped%s; it goes when they end (autoclear is armed)", l.Device, l.Backing, HeldBy(c.Common.RunDir, l))
	}
	if len(held) == 0 {
		killpoint.At("stop:before-remove")
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

// transientWait bounds how long the stop hook waits for copies of the
// container's mounts that other mount namespaces hold.
var transientWait = 3 * time.Second

// waitTransient returns the loops that stay bound, waiting (bounded) for
// those held only by copies of the container's mounts in other mount
// namespaces. Every new mount namespace starts as a copy of its parent's:
// an unprivileged container's root is attached in the host's namespace
// while it runs, so a container (of any kind) whose start began before this
// stop holds a copy of it from LXC's clone until LXC pivots into its own
// root and detaches the old one (milliseconds; longer under load), and so
// does a start hook's private namespace while it builds. Those copies go by
// themselves, and the device with them (autoclear). A holder of another
// kind (a process inside the container's namespace or with a file on its
// mounts, the device open by a process that is not a start hook) is reported at
// once; a copy that outlives the wait (a namespace made with private
// propagation while the container ran) is reported then, by its process.
func waitTransient(c *Context, loops []state.Loop) []state.Loop {
	t0 := time.Now()
	still := WaitCopies(c.Common.RunDir, c.Run, loops)
	if len(loops) > 0 && len(still) == 0 && time.Since(t0) > time.Millisecond {
		c.Log.WithField("waited", time.Since(t0).Round(time.Millisecond)).Debug("the loop devices went with the copies other mount namespaces held")
	}
	return still
}

// WaitCopies returns the loops of the container whose runtime directory is
// run (runRoot: --run-dir) that stay bound, waiting at most transientWait
// while the only holders are copies of its mounts in other mount
// namespaces (see waitTransient); a template device another container
// uses meanwhile is no longer this one's to wait for.
func WaitCopies(runRoot string, run state.Dir, loops []state.Loop) []state.Loop {
	if len(loops) == 0 {
		return nil
	}
	deadline := time.Now().Add(transientWait)
	for {
		var still []state.Loop
		waiting := false
		for _, l := range loops {
			if !sameBinding(l) {
				continue
			}
			if l.Shared && state.UsersOf(l.Dev, l.Ino).Others(run) {
				// A template device another container's start adopted
				// meanwhile: its users' now.
				continue
			}
			still = append(still, l)
			if onlyCopies(FindHolders(runRoot, l)) {
				waiting = true
			}
		}
		if len(still) == 0 || !waiting || time.Now().After(deadline) {
			return still
		}
		time.Sleep(2 * time.Millisecond)
		loops = still
	}
}

// onlyCopies reports whether h names no holder but copies of mounts in
// other namespaces, or start hooks that have a template device open while
// they adopt it. A bind mount of the container's namespace is not a
// holder here: the stop hook detached everything in that namespace (it
// said so if it could not), so what the bind keeps alive holds no device.
func onlyCopies(h Holders) bool {
	for _, p := range h.Procs {
		first, _, _ := strings.Cut(p.Command, " ")
		if !strings.HasPrefix(filepath.Base(first), "lxc-hook-") {
			return false
		}
	}
	return true
}
