package loop

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blkGetDiskseq is BLKGETDISKSEQ, _IOR(0x12, 128, __u64) (Linux 5.15+).
const blkGetDiskseq = 0x80081280

// ErrStillAttached means a detach was asked for but the device is still
// bound: something (a mount, an open file) holds it, and LOOP_CLR_FD only
// armed autoclear.
var ErrStillAttached = errors.New("loop device still attached (in use)")

// Options are the flags a device is attached with.
type Options struct {
	ReadOnly  bool
	Autoclear bool
	// DirectIO asks the kernel to bypass the page cache of the backing file.
	// Attach falls back to buffered I/O when the backing filesystem refuses.
	DirectIO bool
	// Attempts bounds the retries when the free device is taken by another
	// process first; 0 means DefaultAttempts.
	Attempts int
}

// DefaultAttempts bounds Attach's retries on EBUSY. Each attempt costs tens
// of microseconds; a thousand containers starting at once need a few dozen
// at worst.
const DefaultAttempts = 200

// Device is an open loop device. Close releases the hook's reference; with
// autoclear, closing a device that nothing has mounted detaches it.
type Device struct {
	Number  int
	Path    string
	Diskseq uint64
	file    *os.File
}

// Close releases the device fd. Call it only after mount(2) returned.
func (d *Device) Close() error {
	if d == nil || d.file == nil {
		return nil
	}
	err := d.file.Close()
	d.file = nil
	return err
}

// Fd returns the device fd, valid until Close.
func (d *Device) Fd() int { return int(d.file.Fd()) }

// File returns the open device, valid until Close (which closes it).
func (d *Device) File() *os.File { return d.file }

// Status is what the kernel reports for a bound loop device.
type Status struct {
	Number     int
	Path       string
	BackingDev uint64
	BackingIno uint64
	Offset     uint64
	SizeLimit  uint64
	Flags      uint32
	// BackingFile is the backing file's path as sysfs shows it (may end in
	// " (deleted)"), or the truncated name from LOOP_GET_STATUS64.
	BackingFile string
	Diskseq     uint64
}

func (s *Status) ReadOnly() bool  { return s.Flags&unix.LO_FLAGS_READ_ONLY != 0 }
func (s *Status) Autoclear() bool { return s.Flags&unix.LO_FLAGS_AUTOCLEAR != 0 }
func (s *Status) DirectIO() bool  { return s.Flags&unix.LO_FLAGS_DIRECT_IO != 0 }

// DevicePath is the device node of loop device n.
func DevicePath(n int) string { return "/dev/loop" + strconv.Itoa(n) }

// Attach binds backing to a free loop device. The returned Device is open;
// the caller must Close it after mounting (or on error paths, which frees an
// autoclear device that nothing mounted).
func Attach(backing *os.File, opts Options) (*Device, error) {
	attempts := opts.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer ctl.Close()

	var flags uint32
	if opts.ReadOnly {
		flags |= unix.LO_FLAGS_READ_ONLY
	}
	if opts.Autoclear {
		flags |= unix.LO_FLAGS_AUTOCLEAR
	}
	if opts.DirectIO {
		flags |= unix.LO_FLAGS_DIRECT_IO
	}

	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			// Jitter spreads out processes that all got the same free number.
			time.Sleep(jitter(200 * time.Microsecond * time.Duration(min(attempt, 10))))
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev, err := configure(n, backing, flags)
		if err == nil {
			return dev, nil
		}
		if errors.Is(err, unix.EINVAL) && opts.DirectIO {
			// The backing filesystem (tmpfs, some FUSE) cannot do O_DIRECT.
			flags &^= unix.LO_FLAGS_DIRECT_IO
			opts.DirectIO = false
			lastErr = err
			continue
		}
		// EBUSY: another process bound it first. ENXIO/ENOENT: it was
		// removed (LOOP_CTL_REMOVE) meanwhile. Both: take another number.
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
			lastErr = err
			continue
		}
		return nil, err
	}
	return nil, fmt.Errorf("no free loop device after %d attempts (other processes kept taking them): %w", attempts, lastErr)
}

func configure(n int, backing *os.File, flags uint32) (*Device, error) {
	path := DevicePath(n)
	mode := os.O_RDWR
	if flags&unix.LO_FLAGS_READ_ONLY != 0 {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = flags
	copy(cfg.Info.File_name[:], backing.Name())
	err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
	if errors.Is(err, unix.ENOTTY) || (errors.Is(err, unix.EINVAL) && !kernelHasLoopConfigure()) {
		err = setFdAndStatus(f, backing, cfg.Info)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("configure %s on %s: %w", path, backing.Name(), err)
	}
	return &Device{Number: n, Path: path, Diskseq: diskseq(f), file: f}, nil
}

// kernelHasLoopConfigure is false before Linux 5.8, where LOOP_CONFIGURE is
// unknown. Newer kernels answer EINVAL for real configuration errors, which
// must not send us to the racy two-step path.
func kernelHasLoopConfigure() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		return true
	}
	return major > 5 || (major == 5 && minor >= 8)
}

// setFdAndStatus is the pre-5.8 way: two ioctls, with a window in which the
// device is bound without its flags. Used only where LOOP_CONFIGURE is missing.
func setFdAndStatus(dev, backing *os.File, info unix.LoopInfo64) error {
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), &info); err != nil {
		_ = unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}

func diskseq(f *os.File) uint64 {
	var seq uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), blkGetDiskseq, uintptr(unsafe.Pointer(&seq)))
	if errno != 0 {
		return 0
	}
	return seq
}

// Open opens loop device n read-only, without changing it. Note for
// autoclear devices that nothing has mounted: closing it detaches it.
func Open(n int) (*Device, error) {
	path := DevicePath(n)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &Device{Number: n, Path: path, Diskseq: diskseq(f), file: f}, nil
}

// Status reports the device's binding; an unbound device answers an error
// matching unix.ENXIO.
func (d *Device) Status() (*Status, error) {
	info, err := unix.IoctlLoopGetStatus64(d.Fd())
	if err != nil {
		return nil, err
	}
	st := &Status{
		Number:      d.Number,
		Path:        d.Path,
		BackingDev:  info.Device,
		BackingIno:  info.Inode,
		Offset:      info.Offset,
		SizeLimit:   info.Sizelimit,
		Flags:       info.Flags,
		BackingFile: unix.ByteSliceToString(info.File_name[:]),
		Diskseq:     diskseq(d.file),
	}
	if b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/loop/backing_file", d.Number)); err == nil {
		st.BackingFile = strings.TrimSuffix(string(b), "\n")
	}
	return st, nil
}

// StatusOf opens device n and reports its status. A device that is not
// bound, or does not exist, answers an error matching unix.ENXIO or
// os.ErrNotExist.
func StatusOf(n int) (*Status, error) {
	d, err := Open(n)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Status()
}

// IsUnbound reports whether err says a loop device is not bound.
func IsUnbound(err error) bool {
	return errors.Is(err, unix.ENXIO) || errors.Is(err, os.ErrNotExist)
}

// numbers lists the numbers of the loop devices that exist, from one read
// of /sys/block.
func numbers() ([]int, error) {
	d, err := os.Open("/sys/block")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	nums := make([]int, 0, len(names))
	for _, name := range names {
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "loop")); err == nil && strings.HasPrefix(name, "loop") {
			nums = append(nums, n)
		}
	}
	return nums, nil
}

// FindByBacking returns the status of every bound loop device whose backing
// file is the file with this device and inode number. sysfs names each
// device's backing file; only devices whose named file is this one (or whose
// name no longer resolves, e.g. a renamed or deleted file) are opened and
// confirmed with LOOP_GET_STATUS64.
func FindByBacking(dev, ino uint64) ([]*Status, error) {
	all, err := numbers()
	if err != nil {
		return nil, err
	}
	var found []*Status
	for _, n := range all {
		if !sysfsMayMatch(n, dev, ino) {
			continue
		}
		st, err := StatusOf(n)
		if err != nil {
			if IsUnbound(err) {
				continue
			}
			return nil, fmt.Errorf("%s: %w", DevicePath(n), err)
		}
		if st.BackingDev == dev && st.BackingIno == ino {
			found = append(found, st)
		}
	}
	return found, nil
}

func sysfsMayMatch(n int, dev, ino uint64) bool {
	b, err := os.ReadFile("/sys/block/loop" + strconv.Itoa(n) + "/loop/backing_file")
	if err != nil {
		return false // not bound
	}
	var st unix.Stat_t
	if err := unix.Stat(strings.TrimSuffix(string(b), "\n"), &st); err != nil {
		return true // renamed or deleted: only the ioctl can tell
	}
	return st.Dev == dev && st.Ino == ino
}

// Detach unbinds device n and verifies it. A device already unbound is not
// an error. If the device stays bound because something holds it,
// ErrStillAttached is returned (autoclear is then armed: the device goes
// when its last holder does).
func Detach(n int) error {
	path := DevicePath(n)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("LOOP_CLR_FD %s: %w", path, err)
		}
	}
	if _, err := unix.IoctlLoopGetStatus64(int(f.Fd())); err != nil {
		if errors.Is(err, unix.ENXIO) {
			return nil
		}
		return fmt.Errorf("LOOP_GET_STATUS64 %s: %w", path, err)
	}
	return fmt.Errorf("%s: %w", path, ErrStillAttached)
}

// SetCapacity makes the device re-read its backing file's size, after the
// file grew.
func (d *Device) SetCapacity() error {
	return unix.IoctlSetInt(d.Fd(), unix.LOOP_SET_CAPACITY, 0)
}

// jitter returns a pseudo-random duration in [0, max). A xorshift on the
// clock and PID is random enough to spread out processes that raced for
// one device, without math/rand's tables in every hook binary.
func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	x := uint64(time.Now().UnixNano()) ^ uint64(os.Getpid())<<32
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return time.Duration(x % uint64(max))
}
