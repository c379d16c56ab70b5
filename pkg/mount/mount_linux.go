package mount

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Error is a failed mount or unmount, worded like the command line that
// would have failed, with the kernel's own message where it gave one.
type Error struct {
	Op     string // "mount" or "umount"
	FSType string
	Source string
	Target string
	Params []Param
	// Kernel is what the filesystem told fsconfig (e.g. "overlay: failed
	// to resolve '/x': -2"), or "".
	Kernel string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.FSType != "" {
		b.WriteString(" -t " + e.FSType)
	}
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	b.WriteString(" " + e.Target)
	if len(e.Params) > 0 {
		b.WriteString(" -o " + JoinParams(e.Params))
	}
	b.WriteString(": ")
	if e.Kernel != "" {
		b.WriteString(e.Kernel + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// kernelLog drains the messages the kernel queued on an fs context fd.
// Lines start with "e " (error), "w " (warning) or "i " (info).
func kernelLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for i := 0; i < 16; i++ {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break // ENODATA: nothing more queued
		}
		m := strings.TrimSpace(string(buf[:n]))
		if len(m) > 2 && m[1] == ' ' {
			m = m[2:]
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// context is an open fsopen(2) fd being configured.
type context struct {
	fd     int
	fstype string
	source string
	target string
	params []Param
}

func open(fstype, target string) (*context, error) {
	fd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENODEV) {
			return nil, &Error{Op: "mount", FSType: fstype, Target: target, Err: fmt.Errorf("this kernel has no %s filesystem: %w", fstype, err)}
		}
		return nil, &Error{Op: "mount", FSType: fstype, Target: target, Err: fmt.Errorf("fsopen: %w", err)}
	}
	return &context{fd: fd, fstype: fstype, target: target}, nil
}

func (c *context) close() { unix.Close(c.fd) }

func (c *context) fail(err error) error {
	return &Error{Op: "mount", FSType: c.fstype, Source: c.source, Target: c.target, Params: c.params, Kernel: kernelLog(c.fd), Err: err}
}

func (c *context) set(p Param) error {
	var err error
	switch {
	case p.Flag:
		err = unix.FsconfigSetFlag(c.fd, p.Key)
	default:
		err = unix.FsconfigSetString(c.fd, p.Key, p.Value)
	}
	if p.Key == "source" {
		c.source = p.Value
	} else {
		c.params = append(c.params, p)
	}
	if err != nil {
		return c.fail(err)
	}
	return nil
}

// attach creates the superblock, makes a mount of it and moves that onto
// the target, then makes it private so copies of the namespace made later
// do not receive, or pin, what is mounted below it.
func (c *context) attach(attrs int) error {
	if err := unix.FsconfigCreate(c.fd); err != nil {
		return c.fail(err)
	}
	mfd, err := unix.Fsmount(c.fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return c.fail(fmt.Errorf("fsmount: %w", err))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, c.target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return c.fail(fmt.Errorf("move_mount: %w", err))
	}
	if err := unix.Mount("", c.target, "", unix.MS_PRIVATE, ""); err != nil {
		return c.fail(fmt.Errorf("make private: %w", err))
	}
	return nil
}

// Block mounts the filesystem on a block device (a loop device) at target.
// readOnly mounts it read-only at both the superblock and the mount.
func Block(fstype, device, target string, readOnly bool, extra ...Param) error {
	c, err := open(fstype, target)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.set(Param{Key: "source", Value: device}); err != nil {
		return err
	}
	if readOnly {
		if err := c.set(Param{Key: "ro", Flag: true}); err != nil {
			return err
		}
	}
	for _, p := range extra {
		if err := c.set(p); err != nil {
			return err
		}
	}
	attrs := 0
	if readOnly {
		attrs = unix.MOUNT_ATTR_RDONLY
	}
	return c.attach(attrs)
}

// MountOverlay mounts o at target. It uses "lowerdir+" where the kernel has
// it (6.8+) and otherwise one "lowerdir" string, refusing paths that string
// cannot carry.
func MountOverlay(o Overlay, target string) error {
	c, err := open("overlay", target)
	if err != nil {
		return err
	}
	defer c.close()

	plus := true
	if err := unix.FsconfigSetString(c.fd, "lowerdir+", o.Lowers[0]); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			// A real error about the first lower (ENOENT, ...): report it.
			c.params = []Param{{Key: "lowerdir+", Value: o.Lowers[0]}}
			return c.fail(err)
		}
		kernelLog(c.fd) // "Unknown parameter 'lowerdir+'": this kernel predates 6.8
		plus = false
	}
	params, err := o.Params(plus)
	if err != nil {
		return err
	}
	for i, p := range params {
		if plus && p.Key == "lowerdir+" && p.Value == o.Lowers[0] && i == 1 {
			c.params = append(c.params, p) // already set by the probe
			continue
		}
		if err := c.set(p); err != nil {
			return err
		}
	}
	return c.attach(0)
}

// Unmount lazily detaches the mount at target. A target that is not a
// mount point (EINVAL) or does not exist (ENOENT) is already gone: not an
// error, so stop hooks can run again.
func Unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return &Error{Op: "umount", Target: target, Err: err}
}

// HasFilesystem reports whether the kernel can mount fstype, loading its
// module if one exists (fsopen asks for it as mount does).
func HasFilesystem(fstype string) bool {
	fd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// MountAufs mounts a at target with mount(2) (AuFS predates fs_context),
// appending the lowers that did not fit in one option page.
func MountAufs(a Aufs, source, target string) error {
	data, err := a.Data()
	if err != nil {
		return err
	}
	if err := unix.Mount(source, target, "aufs", 0, data[0]); err != nil {
		return &Error{Op: "mount", FSType: "aufs", Source: source, Target: target, Params: []Param{{Key: data[0], Flag: true}}, Err: err}
	}
	for _, d := range data[1:] {
		if err := unix.Mount(source, target, "aufs", unix.MS_REMOUNT, d); err != nil {
			_ = Unmount(target)
			return &Error{Op: "mount", FSType: "aufs", Source: source, Target: target, Params: []Param{{Key: "remount," + d, Flag: true}}, Err: err}
		}
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		_ = Unmount(target)
		return &Error{Op: "mount", Target: target, Err: fmt.Errorf("make private: %w", err)}
	}
	return nil
}
