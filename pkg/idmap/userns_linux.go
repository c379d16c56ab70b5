package idmap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// HoldArg is the hidden first argument that makes a hook binary the
// placeholder process of UserNS: it waits until its stdin closes.
const HoldArg = "__lxc-hooks-userns"

// Hold is the placeholder's main: it only keeps its user namespace alive
// until the parent has opened it.
func Hold() int {
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// UserNS returns an fd of a new user namespace whose maps are m, for
// MOUNT_ATTR_IDMAP. The kernel has no call that makes a user namespace
// without a process in it, so, like containerd's GetUsernsFD, it starts a
// placeholder (this binary again, exe) in a new user namespace, has the
// maps written, opens /proc/PID/ns/user and ends the placeholder: the fd
// keeps the namespace. The caller closes the file.
func UserNS(exe string, m *Mapping) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer w.Close()
	// os.StartProcess, not os/exec: that package would add to every binary.
	p, err := os.StartProcess(exe, []string{exe, HoldArg}, &os.ProcAttr{
		Files: []*os.File{r, nil, nil},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: sysMaps(m.UID),
			GidMappings: sysMaps(m.GID),
			// The maps are written by this (root) process, so setgroups
			// need not be denied.
			GidMappingsEnableSetgroups: true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("starting a process in a user namespace with the container's lxc.idmap (%s): %w", m, err)
	}
	// StartProcess returns once the maps are written and the program runs.
	f, err := os.Open("/proc/" + strconv.Itoa(p.Pid) + "/ns/user")
	w.Close()
	st, werr := p.Wait()
	if err != nil {
		return nil, fmt.Errorf("opening the user namespace with the container's lxc.idmap: %w", err)
	}
	if werr != nil || !st.Success() {
		// It exits 0 on EOF; anything else means it did not run as asked.
		f.Close()
		return nil, fmt.Errorf("the user namespace placeholder failed: %v %v", werr, st)
	}
	return f, nil
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
