package idmap

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// SysMaps is m as os.StartProcess takes it, for a process started in a
// user namespace with the container's mapping.
func SysMaps(m *Mapping) (uid, gid []syscall.SysProcIDMap) {
	return sysMaps(m.UID), sysMaps(m.GID)
}

func sysMaps(rs []Range) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(rs))
	for i, r := range rs {
		out[i] = syscall.SysProcIDMap{ContainerID: int(r.Inside), HostID: int(r.Outside), Size: int(r.Count)}
	}
	return out
}

// ErrNoIdmap says the kernel or the filesystem cannot make idmapped mounts.
var ErrNoIdmap = errors.New("idmapped mounts unsupported")

// Clone returns a detached clone of the mount at path (not its submounts)
// idmapped with userns: files owned by host uid 0 show as owned by the
// container's root. The caller closes the fd, or attaches it with
// move_mount.
func Clone(path string, userns *os.File) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return -1, fmt.Errorf("open_tree %s: %w (%w)", path, err, ErrNoIdmap)
		}
		return -1, fmt.Errorf("open_tree %s: %w", path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			return -1, fmt.Errorf("mount_setattr MOUNT_ATTR_IDMAP %s: %w (%w)", path, err, ErrNoIdmap)
		}
		return -1, fmt.Errorf("mount_setattr MOUNT_ATTR_IDMAP %s: %w", path, err)
	}
	return fd, nil
}

// Attach moves the detached mount fd onto target and makes it private.
func Attach(fd int, target string) error {
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount onto %s: %w", target, err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", target, err)
	}
	return nil
}

// InUserNS reports whether this process runs in a user namespace other
// than the host's, as an unprivileged container's pre-mount hook does.
func InUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return !IsIdentity(string(b))
}

// HolderArg is the hidden first argument that makes a hook binary the
// placeholder process of NewUserNS: it only waits for its stdin to close.
const HolderArg = "__lxc-hooks-userns"

// HoldUntilEOF is the placeholder's main: it returns when its stdin
// closes (NewUserNS closes it, or kills the process, whichever comes first).
func HoldUntilEOF() int {
	b := make([]byte, 1)
	for {
		if _, err := os.Stdin.Read(b); err != nil {
			return 0
		}
	}
}

// NewUserNS returns an open user namespace with the mapping m, for
// idmapped mounts (MOUNT_ATTR_IDMAP takes a user namespace fd, and holds
// the namespace as long as the mount lives). The kernel makes no user
// namespace without a process (a multi-threaded process such as a Go
// program may not unshare(CLONE_NEWUSER)), so exe (the hook binary,
// /proc/self/exe) is started in a new one with HolderArg, the namespace is
// opened through it, and the process is killed and reaped at once: it
// never does anything. Its PID names it safely until it is reaped: no other
// process can take the PID of an unreaped child.
func NewUserNS(exe string, m *Mapping) (*os.File, error) {
	stdin, holdOpen, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer holdOpen.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		stdin.Close()
		return nil, err
	}
	defer null.Close()
	uidMaps, gidMaps := SysMaps(m)
	p, err := os.StartProcess(exe, []string{exe, HolderArg}, &os.ProcAttr{
		// Stdout/stderr on /dev/null: LXC reads a hook's output until EOF,
		// and this process must never hold that pipe.
		Files: []*os.File{stdin, null, null},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: uidMaps,
			GidMappings: gidMaps,
			// The maps are written by this (root) process, so setgroups
			// need not be denied.
			GidMappingsEnableSetgroups: true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	stdin.Close()
	if err != nil {
		return nil, fmt.Errorf("starting a process in a user namespace with the mapping %s: %w", m, err)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", p.Pid))
	p.Kill()
	p.Wait()
	if err != nil {
		return nil, fmt.Errorf("opening the user namespace with the mapping %s: %w", m, err)
	}
	return ns, nil
}
