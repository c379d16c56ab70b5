package freeze

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// cgroupHolder freezes the processes of a cgroup, through its directory.
type cgroupHolder struct {
	dir *os.File
	v2  bool
}

func (h *cgroupHolder) read(name string) (string, error) {
	fd, err := unix.Openat(int(h.dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s/%s: %w", h.dir.Name(), name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil {
		return "", fmt.Errorf("%s/%s: %w", h.dir.Name(), name, err)
	}
	return string(b[:n]), nil
}

func (h *cgroupHolder) write(name, value string) error {
	fd, err := unix.Openat(int(h.dir.Fd()), name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", h.dir.Name(), name, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		return fmt.Errorf("writing %s to %s/%s: %w", value, h.dir.Name(), name, err)
	}
	return nil
}

// frozen reports whether every process of the cgroup is frozen.
func (h *cgroupHolder) frozen() (bool, error) {
	if !h.v2 {
		s, err := h.read("freezer.state")
		return strings.TrimSpace(s) == "FROZEN", err
	}
	s, err := h.read("cgroup.events")
	return eventsFrozen(s), err
}

// eventsFrozen reads cgroup v2's cgroup.events ("populated 1\nfrozen 1\n").
func eventsFrozen(events string) bool {
	for _, l := range strings.Split(events, "\n") {
		if strings.TrimSpace(l) == "frozen 1" {
			return true
		}
	}
	return false
}

func (h *cgroupHolder) request(freeze bool) error {
	if !h.v2 {
		return h.write("freezer.state", map[bool]string{true: "FROZEN", false: "THAWED"}[freeze])
	}
	return h.write("cgroup.freeze", map[bool]string{true: "1", false: "0"}[freeze])
}

// freeze asks the kernel to freeze the cgroup and waits, bounded by
// settle, until every process is frozen (a process stops at its next
// return to user space or freezable sleep). One that never gets there (in
// an uninterruptible wait) fails the freeze, which is undone.
func (h *cgroupHolder) freeze(settle time.Duration) (already bool, err error) {
	if f, err := h.frozen(); err != nil {
		return false, err
	} else if f {
		return true, nil
	}
	if err := h.request(true); err != nil {
		return false, err
	}
	deadline := time.Now().Add(settle)
	for i := 0; ; i++ {
		f, err := h.frozen()
		if err == nil && f {
			return false, nil
		}
		if err != nil || time.Now().After(deadline) {
			if terr := h.request(false); terr != nil {
				return false, fmt.Errorf("%v; and thawing it again: %v", err, terr)
			}
			if err != nil {
				return false, err
			}
			return false, fmt.Errorf("the container's processes did not all stop within %s (one in an uninterruptible wait?); it was thawed again", settle)
		}
		// v1 has no event to wait on: poll, fast at first (a container
		// of sleeping processes freezes in well under a millisecond).
		if i < 50 {
			time.Sleep(200 * time.Microsecond)
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (h *cgroupHolder) stillFrozen() bool {
	if h.v2 {
		// Asked for and reached: a thaw and a new freeze by someone else
		// in between would not show, the request alone would.
		if s, err := h.read("cgroup.freeze"); err != nil || strings.TrimSpace(s) != "1" {
			return false
		}
	}
	f, err := h.frozen()
	return err == nil && f
}

func (h *cgroupHolder) thaw() error { return h.request(false) }

func (h *cgroupHolder) close() {}

// CgroupOf finds the cgroup that holds every process of the container
// whose init is pid: the root of init's cgroup namespace (LXC's
// lxc.payload.NAME), in the freezer hierarchy where cgroup v1 has one
// (what lxc-freeze uses there), else in cgroup v2. The caller closes the
// Target.
//
// A PID names nothing by itself: it is opened as a pidfd first, and the
// pidfd still names a live process after /proc/PID was read, so what was
// read was that process's.
func CgroupOf(pid int) (Target, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return Target{}, fmt.Errorf("process %d (the container's init): %w", pid, err)
	}
	defer unix.Close(pidfd)
	hostView, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return Target{}, err
	}
	nsView, err := cgroupsFromInside(pidfd, pid)
	if err != nil {
		return Target{}, err
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return Target{}, fmt.Errorf("the container's init (%d) is gone: %w", pid, err)
	}
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return m.FSType != "cgroup" && m.FSType != "cgroup2", false
	})
	if err != nil {
		return Target{}, err
	}
	kind, mnt, rel, err := pickCgroup(parseProcCgroup(string(hostView)), parseProcCgroup(string(nsView)), mounts)
	if err != nil {
		return Target{}, fmt.Errorf("the cgroup of process %d: %w", pid, err)
	}
	dir, err := openBeneath(mnt, rel)
	if err != nil {
		return Target{}, err
	}
	return Target{Kind: kind, file: dir, own: true}, nil
}

// cgroupsFromInside reads /proc/PID/cgroup from inside the process's own
// cgroup namespace, where its paths are relative to the namespace's root:
// a thread of its own enters the namespace, reads, and is thrown away
// (never unlocked), so no other goroutine runs there.
func cgroupsFromInside(pidfd, pid int) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(pidfd, unix.CLONE_NEWCGROUP); err != nil {
			done <- result{nil, fmt.Errorf("entering the cgroup namespace of process %d: %w", pid, err)}
			return
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		done <- result{b, err}
	}()
	r := <-done
	return r.b, r.err
}

// procCgroup is one line of /proc/PID/cgroup: "ID:CONTROLLERS:PATH".
type procCgroup struct {
	controllers []string // empty for cgroup v2's "0::PATH"
	path        string
}

func parseProcCgroup(s string) []procCgroup {
	var out []procCgroup
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var ctl []string
		if parts[1] != "" {
			ctl = strings.Split(parts[1], ",")
		}
		out = append(out, procCgroup{controllers: ctl, path: parts[2]})
	}
	return out
}

func (p procCgroup) has(controller string) bool {
	for _, c := range p.controllers {
		if c == controller {
			return true
		}
	}
	return false
}

// pickCgroup chooses the hierarchy (v1 freezer where mounted, else v2)
// and the container's cgroup in it: init's path as the host sees it, less
// the part inside the cgroup namespace (init may sit in a sub-cgroup of
// the namespace's root, as systemd's init.scope). It returns the kind, the
// hierarchy's mount point and the cgroup's path below it.
func pickCgroup(host, inside []procCgroup, mounts []*mountinfo.Info) (Kind, string, string, error) {
	find := func(l []procCgroup, v1 bool) (procCgroup, bool) {
		for _, p := range l {
			if v1 && p.has("freezer") || !v1 && len(p.controllers) == 0 {
				return p, true
			}
		}
		return procCgroup{}, false
	}
	mountOf := func(v1 bool) string {
		for _, m := range mounts {
			if m.Root != "/" {
				continue
			}
			if v1 && m.FSType == "cgroup" && hasOption(m.VFSOptions, "freezer") || !v1 && m.FSType == "cgroup2" {
				return m.Mountpoint
			}
		}
		return ""
	}
	for _, v1 := range []bool{true, false} {
		h, ok := find(host, v1)
		mp := mountOf(v1)
		if !ok || mp == "" {
			continue
		}
		root := h.path
		if in, ok := find(inside, v1); ok && in.path != h.path {
			// Inside, the same cgroup shows relative to the namespace's
			// root ("/" for init in the root itself).
			if in.path == "/" {
				root = h.path
			} else if strings.HasSuffix(h.path, in.path) {
				root = strings.TrimSuffix(h.path, in.path)
			}
		}
		if root == "" || root == "/" {
			return "", "", "", errors.New("it is the host's root cgroup; freezing it would freeze the host")
		}
		k := CgroupV2
		if v1 {
			k = CgroupV1
		}
		return k, mp, strings.TrimPrefix(root, "/"), nil
	}
	return "", "", "", errors.New("no cgroup v1 freezer hierarchy or cgroup v2 mounted for it")
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// openBeneath opens the directory rel below the mount point mp without
// following any link or leaving the mount.
func openBeneath(mp, rel string) (*os.File, error) {
	base, err := unix.Open(mp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mp, err)
	}
	defer unix.Close(base)
	fd, err := unix.Openat2(base, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(mp, rel), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(mp, rel)), nil
}
