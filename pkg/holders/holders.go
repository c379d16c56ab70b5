// Package holders finds the processes that keep a container's storage
// alive after it stopped: processes still inside its mount namespace,
// processes with a loop device open, and bind mounts of the namespace file.
//
// It reads /proc only, once per call, so it is bounded by the number of
// processes on the host.
package holders

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Process is a holder, named the way a sysadmin looks for it.
type Process struct {
	PID     int
	Command string // the command line, or the comm name for kernel threads
	Start   uint64 // start time, which with the PID identifies the process
}

func (p Process) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Command) }

// Join lists holders for a one-line message.
func Join(ps []Process) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// MountNSInode returns the inode number of the mount namespace of process
// pid ("self" for this one), as in "mnt:[4026532301]".
func MountNSInode(pid string) (uint64, error) {
	link, err := os.Readlink("/proc/" + pid + "/ns/mnt")
	if err != nil {
		return 0, err
	}
	return parseNSLink(link)
}

func parseNSLink(link string) (uint64, error) {
	s, ok := strings.CutPrefix(link, "mnt:[")
	if !ok || !strings.HasSuffix(s, "]") {
		return 0, fmt.Errorf("unexpected namespace link %q", link)
	}
	return strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
}

// Names lists a directory's entries unsorted: os.ReadDir would sort
// thousands of /proc entries for nothing (and link a sort per caller).
func Names(dir string) []string {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return names
}

func pids() []int {
	names := Names("/proc")
	out := make([]int, 0, len(names))
	for _, name := range names {
		if n, err := strconv.Atoi(name); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func describe(pid int) Process {
	p := Process{PID: pid, Start: startTime(pid)}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && len(b) > 0 {
		p.Command = strings.TrimSpace(strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
	if p.Command == "" {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
			p.Command = "[" + strings.TrimSpace(string(b)) + "]"
		}
	}
	return p
}

// WithFileOpen lists processes with an open fd on path (e.g. /dev/loop5).
func WithFileOpen(path string) []Process {
	var out []Process
	self := selfPID()
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		for _, fd := range Names(dir) {
			if t, err := os.Readlink(filepath.Join(dir, fd)); err == nil && t == path {
				out = append(out, describe(pid))
				break
			}
		}
	}
	return out
}

// WithMountOf lists one process per mount namespace in which a filesystem
// on device major:minor is mounted, or whose mount source is source (when
// not ""). Each namespace's table is read once.
func WithMountOf(major, minor int, source string) []Process {
	var out []Process
	seen := map[string]bool{}
	self := selfPID()
	devField := fmt.Sprintf("%d:%d", major, minor)
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		if mountinfoHas("/proc/"+strconv.Itoa(pid)+"/mountinfo", devField, source) {
			out = append(out, describe(pid))
		}
	}
	return out
}

func mountinfoHas(path, devField, source string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		if devField != "" && fields[2] == devField {
			return true
		}
		if source != "" {
			for i, f := range fields {
				if f == "-" && i+2 < len(fields) && fields[i+2] == source {
					return true
				}
			}
		}
	}
	return false
}

// WithUnionMounted returns one process per mount namespace that has a
// union filesystem of these hooks (overlay or aufs, its source an
// lxc-hook-* name) with the device number devField ("major:minor")
// mounted: a copy of a container's root that another namespace took, which
// keeps the layers and their loop devices. The number alone could be a
// newer filesystem's; the caller asks only while the loop device under it
// is verified still bound, and the type and source narrow it to ours.
func WithUnionMounted(devField string) []Process {
	var out []Process
	seen := map[string]bool{}
	self := selfPID()
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		if unionMounted("/proc/"+strconv.Itoa(pid)+"/mountinfo", devField) {
			out = append(out, describe(pid))
		}
	}
	return out
}

func unionMounted(path, devField string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[2] != devField {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				if (fields[i+1] == "overlay" || fields[i+1] == "aufs") && strings.HasPrefix(fields[i+2], "lxc-hook-") {
					return true
				}
				break
			}
		}
	}
	return false
}

// NamespaceBindMounts lists the paths, in the host's mount table, where the
// mount namespace with this id is bind-mounted (which keeps it alive with
// no process in it). The table shows only the namespace's inode number,
// which may be a newer namespace's by now: each candidate is opened and
// its id compared.
func NamespaceBindMounts(id uint64) []string {
	if id == 0 {
		return nil
	}
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("nsfs"))
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(m.Root, "mnt:[") {
			if got, err := MountNSID(m.Mountpoint); err == nil && got == id {
				out = append(out, m.Mountpoint)
			}
		}
	}
	return out
}

// selfPID is this process's PID as /proc numbers it. In pre-mount the hook
// runs in the container's new PID namespace while /proc is still the
// host's, so getpid() (a small number there) would not exclude the hook
// from its own search.
func selfPID() int {
	if s, err := os.Readlink("/proc/self"); err == nil {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return os.Getpid()
}
