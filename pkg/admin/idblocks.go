package admin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/holders"
	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/idmap"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/runner"
)

// The host's ID files and useradd's settings.
var (
	hostFiles = idmap.SystemFiles
	loginDefs = "/etc/login.defs"
)

// initMapping is the lxc.idmap init writes: block 0 of root's range (the
// shared one), or with isolated the first block no container under
// lxcpath uses. Root is given a range first where it has none. note is a
// config comment; unlock ends the hold on the lxcpath's blocks, which the
// caller keeps until the config is written.
func initMapping(lxcpath string, isolated bool, stdout io.Writer) (m *idmap.Mapping, note string, unlock func(), err error) {
	root, wrote, err := idmap.EnsureRoot(hostFiles, loginDefs)
	for _, w := range wrote {
		fmt.Fprintf(stdout, "Gave root the subordinate ID range %s: above every other range and SUB_UID_MAX/SUB_GID_MAX of %s, so no user has or will get these IDs from useradd\n", w, loginDefs)
	}
	if err != nil {
		return nil, "", nil, err
	}
	if !isolated {
		return root.Block(0), "", func() {}, nil
	}
	if err := os.MkdirAll(lxcpath, 0o755); err != nil {
		return nil, "", nil, err
	}
	unlock, err = lockLXCPath(lxcpath)
	if err != nil {
		return nil, "", nil, err
	}
	h, err := idmap.ReadHost(hostFiles)
	if err != nil {
		unlock()
		return nil, "", nil, err
	}
	k, m, err := freeBlock(root, h, []string{lxcpath}, "")
	if err != nil {
		unlock()
		return nil, "", nil, err
	}
	fmt.Fprintf(stdout, "Isolated: block %d of root's range, %s, which no other container under %s uses\n", k, describeBlock(m), lxcpath)
	return m, "Isolated (--isolated): a block of root's range of its own; a copy gets a new block", unlock, nil
}

func describeBlock(m *idmap.Mapping) string {
	u, g := m.UID[0], m.GID[0]
	return fmt.Sprintf("host uids %d-%d and gids %d-%d", u.Outside, uint64(u.Outside)+uint64(u.Count)-1, g.Outside, uint64(g.Outside)+uint64(g.Count)-1)
}

// lockWait bounds the wait for another init or copy choosing a block
// (each holds the lock for as long as it takes to write a config).
const blockLockWait = 30 * time.Second

// lockLXCPath takes an exclusive flock on the lxcpath directory: the
// choice of a free block and the config (or reservation) that takes it
// are one step for init --isolated and copy.
func lockLXCPath(lxcpath string) (func(), error) {
	fd, err := unix.Open(lxcpath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lxcpath, err)
	}
	deadline := time.Now().Add(blockLockWait)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return nil, fmt.Errorf("flock %s: %w", lxcpath, err)
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("%s is locked by another init or copy choosing an ID block for more than %s: try again", lxcpath, blockLockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reservationName is the file in a copy's directory that holds its new
// lxc.idmap lines from the choice of its block until its config is
// written: the copy of a large layer takes a while, and other inits and
// copies must not take the same block meanwhile. A leading dot keeps it
// out of copies.
const reservationName = ".lxc-hook-idmap-reserved"

// usedRanges lists the host ranges of every lxc.idmap line of the
// containers under lxcpath (their configs, their snapshots' configs, and
// copies' reservations), but for the config exclude.
func usedRanges(lxcpath, exclude string) (uids, gids []idmap.Range) {
	exclude = filepath.Clean(exclude)
	for _, name := range holders.Names(lxcpath) {
		dir := filepath.Join(lxcpath, name)
		files := []string{filepath.Join(dir, "config"), filepath.Join(dir, reservationName)}
		snaps, _ := filepath.Glob(filepath.Join(dir, "snaps", "*", "config"))
		for _, cfg := range append(files, snaps...) {
			if cfg == exclude {
				continue
			}
			f, err := os.Open(cfg)
			if err != nil {
				continue
			}
			vals := hook.ConfigValues(f, idmap.ConfigKey)[idmap.ConfigKey]
			f.Close()
			for _, v := range vals {
				t, r, ok := parseIdmapLine(v)
				if !ok {
					continue
				}
				if t == "u" || t == "b" {
					uids = append(uids, r)
				}
				if t == "g" || t == "b" {
					gids = append(gids, r)
				}
			}
		}
	}
	return uids, gids
}

// parseIdmapLine reads one lxc.idmap value, leniently: a config with a
// broken line still takes the IDs its other lines name.
func parseIdmapLine(v string) (string, idmap.Range, bool) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return "", idmap.Range{}, false
	}
	var n [3]uint32
	for i, s := range f[1:] {
		x, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return "", idmap.Range{}, false
		}
		n[i] = uint32(x)
	}
	return f[0], idmap.Range{Inside: n[0], Outside: n[1], Count: n[2]}, n[2] > 0
}

// freeBlock is the first block of root's range, after the shared block 0,
// that no lxc.idmap under the lxcpaths touches (but exclude's) and that
// no other user or group of h has IDs in.
func freeBlock(root idmap.RootRange, h *idmap.Host, lxcpaths []string, exclude string) (uint64, *idmap.Mapping, error) {
	n := root.Blocks()
	if n < 2 {
		return 0, nil, fmt.Errorf("root's range (%s, %s) holds %d block of %d IDs, the one containers without --isolated share: none is left for an isolated container; give root a larger range", root.UID, root.GID, n, idmap.MinRange)
	}
	used := make([]bool, n)
	var uids, gids []idmap.Range
	for _, p := range lxcpaths {
		u, g := usedRanges(p, exclude)
		uids, gids = append(uids, u...), append(gids, g...)
	}
	if h != nil {
		claims := func(cs []idmap.Claim) (rs []idmap.Range) {
			for _, c := range cs {
				rs = append(rs, idmap.Range{Outside: c.Start, Count: uint32(min(c.Count, idmap.MaxID+1-uint64(c.Start)))})
			}
			return rs
		}
		uids, gids = append(uids, claims(h.UIDs)...), append(gids, claims(h.GIDs)...)
	}
	mark := func(start uint32, rs []idmap.Range) {
		for _, r := range rs {
			lo, hi := uint64(r.Outside), uint64(r.Outside)+uint64(r.Count) // [lo, hi)
			base := uint64(start)
			if hi <= base {
				continue
			}
			first := uint64(0)
			if lo > base {
				first = (lo - base) / idmap.MinRange
			}
			for k := first; k < n && base+k*idmap.MinRange < hi; k++ {
				used[k] = true
			}
		}
	}
	mark(root.UID.Start, uids)
	mark(root.GID.Start, gids)
	for k := uint64(1); k < n; k++ {
		if !used[k] {
			return k, root.Block(k), nil
		}
	}
	return 0, nil, fmt.Errorf("root's range (%s, %s) holds no free block of %d IDs for an isolated container: block 0 is the shared one and the %d others are taken by containers under %s or by other users' IDs; give root a larger range", root.UID, root.GID, idmap.MinRange, n-1, strings.Join(lxcpaths, " and "))
}

// lockLXCPaths locks each of the lxcpaths, in one order (no two copies
// wait on each other).
func lockLXCPaths(lxcpaths []string) (func(), error) {
	var unlocks []func()
	release := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	for _, p := range lxcpaths {
		u, err := lockLXCPath(p)
		if err != nil {
			release()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	return release, nil
}

// copyLXCPaths are the LXC paths a copy's block must be free in: the
// source's and the copy's (they differ for lxc-copy -p, and for
// lxc-snapshot, whose snapshots are containers under SRC/snaps and whose
// restore copies one back), sorted, without repeats.
func copyLXCPaths(srcConfig, dstConfig string) []string {
	a := filepath.Clean(filepath.Dir(filepath.Dir(srcConfig)))
	b := filepath.Clean(filepath.Dir(filepath.Dir(dstConfig)))
	// A snapshot's lxcpath is SRC/snaps: count the containers beside SRC.
	for _, p := range []*string{&a, &b} {
		if filepath.Base(*p) == "snaps" {
			*p = filepath.Dir(filepath.Dir(*p))
		}
	}
	if a == b {
		return []string{a}
	}
	if b < a {
		a, b = b, a
	}
	return []string{a, b}
}

// idShift is the new block of a copy of an isolated container.
type idShift struct {
	From, To    *idmap.Mapping // the source's config mapping, the copy's
	Block       uint64
	Reservation string
}

// planCopyBlock gives the copy at dstConfig of an isolated container (its
// lxc.idmap is a block of root's range other than the shared one) a new
// block of its own, reserved in the copy's directory; nil for any other
// container, whose copy keeps its mapping.
func planCopyBlock(srcConfig, dstConfig string) (*idShift, error) {
	m, err := runner.ConfigMapping(srcConfig)
	if err != nil || m == nil {
		return nil, nil // privileged, or a config start refuses anyway
	}
	h, err := idmap.ReadHost(hostFiles)
	if err != nil {
		return nil, err
	}
	root, ok := h.Root()
	if !ok {
		return nil, nil
	}
	if k, ok := root.BlockOf(m); !ok || k == 0 {
		return nil, nil
	}
	dstDir := filepath.Dir(dstConfig)
	lxcpaths := copyLXCPaths(srcConfig, dstConfig)
	unlock, err := lockLXCPaths(lxcpaths)
	if err != nil {
		return nil, err
	}
	defer unlock()
	k, nm, err := freeBlock(root, h, lxcpaths, dstConfig)
	if err != nil {
		return nil, err
	}
	res := filepath.Join(dstDir, reservationName)
	var b strings.Builder
	for _, l := range nm.Lines() {
		fmt.Fprintf(&b, "%s = %s\n", idmap.ConfigKey, l)
	}
	if err := os.WriteFile(res, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("reserving block %d for the copy: %w", k, err)
	}
	return &idShift{From: m, To: nm, Block: k, Reservation: res}, nil
}

// shiftLayerRoot moves the files of the layer rooted at root (upper/,
// work/) from the mapping its record names to the mapping to, and
// records to. A layer without a record holds no container's files yet.
func shiftLayerRoot(root string, to *idmap.Mapping) (idmap.ShiftStats, error) {
	var total idmap.ShiftStats
	from, err := idmap.Record(root)
	if err != nil || from == nil {
		return total, err
	}
	for _, sub := range []string{"upper", "work"} {
		p := filepath.Join(root, sub)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		s, err := idmap.ShiftTree(p, from, to)
		total.Files += s.Files
		total.Owners += s.Owners
		total.ACLs += s.ACLs
		total.Caps += s.Caps
		if err != nil {
			return total, err
		}
	}
	return total, idmap.SetRecord(root, to)
}

// shiftImageLayer shifts the layer inside the ext4 image at path: mounted
// on a loop device in a private mount namespace of this process (nothing
// shows on the host), unmounted before it returns.
func shiftImageLayer(path string, to *idmap.Mapping) (idmap.ShiftStats, error) {
	var stats idmap.ShiftStats
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return stats, err
	}
	defer f.Close()
	dev, err := loop.Attach(f, loop.Options{Autoclear: true})
	if err != nil {
		return stats, fmt.Errorf("image %s: attaching a loop device: %w", path, err)
	}
	// Autoclear: the device goes with its last mount and this reference.
	defer dev.Close()
	err = mount.InPrivateNamespace(func() error {
		mp, err := os.MkdirTemp("", "lxc-hook-shift-")
		if err != nil {
			return err
		}
		defer os.Remove(mp)
		if err := mount.Block("ext4", dev.Path, mp, false); err != nil {
			return fmt.Errorf("image %s: %w", path, err)
		}
		stats, err = shiftLayerRoot(mp, to)
		if uerr := mount.Unmount(mp); uerr != nil && err == nil {
			err = uerr
		}
		return err
	})
	return stats, err
}
