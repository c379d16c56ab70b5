package holders

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Namespace inode numbers and PIDs are reused as soon as their owner is
// gone, so nothing here identifies a holder by them alone: a mount
// namespace by its 64-bit id (never reused), a mount by its 64-bit unique
// id (never reused), a process by its PID and start time, pinned with a
// pidfd before it is signalled.

// MountNSID returns the 64-bit id of the mount namespace at path
// (/proc/PID/ns/mnt, or a bind mount of one), which the kernel never
// reuses, unlike the namespace's inode number (NS_GET_MNTNS_ID, a recent
// ioctl: present on 6.18).
func MountNSID(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var id uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.NS_GET_MNTNS_ID, uintptr(unsafe.Pointer(&id))); e != 0 {
		return 0, fmt.Errorf("NS_GET_MNTNS_ID on %s: %w", path, e)
	}
	return id, nil
}

// MountID returns the unique 64-bit id of the mount at the top of path
// (statx STATX_MNT_ID_UNIQUE, Linux 6.8+), and its reusable 32-bit id as
// /proc/PID/mountinfo shows it. Magic links (/proc/PID/fd/N, cwd, root) are
// followed to the file they name, so this also says which mount a
// process's open file is on, even a mount detached since.
func MountID(path string) (unique uint64, old uint64, err error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID_UNIQUE, &st); err != nil {
		return 0, 0, err
	}
	if st.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0, 0, errors.New("this kernel has no unique mount ids (statx STATX_MNT_ID_UNIQUE, Linux 6.8)")
	}
	unique = st.Mnt_id
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID, &st); err != nil {
		return 0, 0, err
	}
	return unique, st.Mnt_id, nil
}

// LiveMountNSIDs is the set of 64-bit ids of the mount namespaces that
// have a process in them now. Each distinct namespace is asked its id once.
func LiveMountNSIDs() map[uint64]bool {
	out := map[uint64]bool{}
	seen := map[string]bool{}
	for _, pid := range pids() {
		p := "/proc/" + strconv.Itoa(pid) + "/ns/mnt"
		link, err := os.Readlink(p)
		if err != nil || seen[link] {
			continue
		}
		seen[link] = true
		if id, err := MountNSID(p); err == nil {
			out[id] = true
		}
	}
	return out
}

// InMountNSID lists the processes in the mount namespace with this id.
// Each distinct namespace is asked its id once.
func InMountNSID(id uint64) []Process {
	if id == 0 {
		return nil
	}
	var out []Process
	ids := map[string]uint64{}
	self := selfPID()
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		p := "/proc/" + strconv.Itoa(pid) + "/ns/mnt"
		link, err := os.Readlink(p)
		if err != nil {
			continue
		}
		got, ok := ids[link]
		if !ok {
			got, _ = MountNSID(p)
			ids[link] = got
		}
		if got == id {
			out = append(out, describe(pid))
		}
	}
	return out
}

// WithFilesOn lists the processes whose root, working directory, an open
// file, or a mapped file is on one of the mounts with these unique ids, or
// on the block device dev (0: none). Such a process keeps the filesystem,
// and the loop device under it, alive, though it may be in no container
// (a host shell holding /proc/PID/root/bin/busybox of a stopped one).
func WithFilesOn(mounts []uint64, dev uint64) []Process {
	want := map[uint64]bool{}
	for _, m := range mounts {
		want[m] = true
	}
	if len(want) == 0 && dev == 0 {
		return nil
	}
	mapsDev := ""
	if dev != 0 {
		mapsDev = fmt.Sprintf("%02x:%02x", unix.Major(dev), unix.Minor(dev))
	}
	holds := func(path string) bool {
		var st unix.Statx_t
		if unix.Statx(unix.AT_FDCWD, path, unix.AT_NO_AUTOMOUNT, unix.STATX_MNT_ID_UNIQUE, &st) != nil {
			return false
		}
		if st.Mask&unix.STATX_MNT_ID_UNIQUE != 0 && want[st.Mnt_id] {
			return true
		}
		return dev != 0 && unix.Mkdev(st.Dev_major, st.Dev_minor) == dev
	}
	var out []Process
	self := selfPID()
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		base := "/proc/" + strconv.Itoa(pid)
		found := holds(base+"/root") || holds(base+"/cwd")
		if !found {
			for _, fd := range Names(base + "/fd") {
				if holds(base + "/fd/" + fd) {
					found = true
					break
				}
			}
		}
		if !found && mapsDev != "" {
			found = mapsOn(base+"/maps", mapsDev)
		}
		if found {
			out = append(out, describe(pid))
		}
	}
	return out
}

// mapsOn reports whether a line of a maps file maps a file of device dev
// ("07:03", the fourth field).
func mapsOn(path, dev string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && fields[3] == dev && fields[4] != "0" {
			return true
		}
	}
	return false
}

// Kill sends SIGKILL to p only if it is still the process that was found:
// a pidfd pins the PID first, and the start time read after must be the
// one recorded, so a PID reused meanwhile is never signalled.
func Kill(p Process) error {
	if p.PID <= 1 || p.PID == selfPID() || p.Start == 0 {
		return fmt.Errorf("pid %d: not killed (its identity is not proven)", p.PID)
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		return fmt.Errorf("pid %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if startTime(p.PID) != p.Start {
		return fmt.Errorf("pid %d: no longer the process found (it ended; the PID was reused)", p.PID)
	}
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// startTime is the process's start time in clock ticks since boot (field
// 22 of /proc/PID/stat), 0 when it is gone.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	// After ") " come fields 3 (state) onwards: start time is field 22.
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// StartTime is the process's start time in clock ticks since boot, 0 when
// it is gone: with its PID, what names a process that cannot be reused.
func StartTime(pid int) uint64 { return startTime(pid) }
