package freeze

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

const (
	fiFreeze = 0xC0045877 // FIFREEZE, _IOWR('X', 119, int)
	fiThaw   = 0xC0045878 // FITHAW, _IOWR('X', 120, int)
)

// fsHolder freezes the ext4 filesystem on a block device through a
// detached mount of it.
type fsHolder struct {
	dev  *os.File
	mnt  int // the fsmount fd: a mount in no namespace, gone when closed
	root int // the filesystem's root directory, for the ioctls
}

func newFSHolder(dev *os.File) (*fsHolder, error) {
	h := &fsHolder{dev: dev, mnt: -1, root: -1}
	if err := h.mount(); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// blockName is the kernel's name of the block device open as dev
// ("loop3"), which names its ext4 superblock in /sys/fs/ext4.
func blockName(dev *os.File) (string, uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(dev.Fd()), &st); err != nil {
		return "", 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", 0, fmt.Errorf("%s is not a block device", dev.Name())
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	if err != nil {
		return "", 0, err
	}
	return filepath.Base(link), st.Rdev, nil
}

// mount mounts the ext4 on h.dev once more, detached: the kernel finds the
// superblock the container mounted (one superblock per block device) and
// hands out a new mount of it, which no mount namespace holds and no path
// reaches; it goes when its fd is closed. The filesystem must be mounted
// already: a superblock made here would mount the image afresh (a stopped
// container's, by a copy that raced its stop), which is refused.
func (h *fsHolder) mount() error {
	name, rdev, err := blockName(h.dev)
	if err != nil {
		return err
	}
	if _, err := os.Stat("/sys/fs/ext4/" + name); err != nil {
		return fmt.Errorf("no ext4 filesystem is mounted from %s (the container stopped?): %w", h.dev.Name(), err)
	}
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen ext4: %w", err)
	}
	defer unix.Close(fsfd)
	// The device by the fd the caller opened and checked, not by a name.
	if err := unix.FsconfigSetString(fsfd, "source", "/proc/self/fd/"+strconv.Itoa(int(h.dev.Fd()))); err != nil {
		return fmt.Errorf("mounting %s again: %w", h.dev.Name(), err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("mounting %s again: %w", h.dev.Name(), err)
	}
	h.mnt, err = unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		h.mnt = -1
		return fmt.Errorf("fsmount %s: %w", h.dev.Name(), err)
	}
	// "." of the mount: its root, no name looked up, no link followed.
	h.root, err = unix.Openat(h.mnt, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		h.root = -1
		return fmt.Errorf("opening the root of %s: %w", h.dev.Name(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(h.root, &st); err != nil {
		return err
	}
	if st.Dev != rdev {
		return fmt.Errorf("the detached mount of %s is of device %d:%d", h.dev.Name(), unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	return nil
}

func (h *fsHolder) ioctl(req uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(h.root), req, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// freeze: FIFREEZE syncs the filesystem, checkpoints its journal and
// blocks every write until FITHAW. EBUSY: someone else froze it first.
func (h *fsHolder) freeze() (already bool, err error) {
	err = h.ioctl(fiFreeze)
	if errors.Is(err, unix.EBUSY) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("FIFREEZE on %s: %w", h.dev.Name(), err)
	}
	return false, nil
}

// stillFrozen asks by freezing again: EBUSY means frozen. A success means
// it had been thawed meanwhile, and is frozen now (thaw follows).
func (h *fsHolder) stillFrozen() bool {
	return errors.Is(h.ioctl(fiFreeze), unix.EBUSY)
}

// thaw: EINVAL means not frozen, which is what is wanted.
func (h *fsHolder) thaw() error {
	if err := h.ioctl(fiThaw); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("FITHAW on %s: %w", h.dev.Name(), err)
	}
	return nil
}

func (h *fsHolder) close() {
	if h.root >= 0 {
		unix.Close(h.root)
	}
	if h.mnt >= 0 {
		unix.Close(h.mnt)
	}
	h.root, h.mnt = -1, -1
}
