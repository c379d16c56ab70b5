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
