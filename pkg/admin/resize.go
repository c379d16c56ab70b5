package admin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
)

const resizeAbout = `Grows the cap of container NAME to SIZE. A stopped container's image is
checked and grown offline (file, then resize2fs). A running container's image
is grown online: the file, then LOOP_SET_CAPACITY, then the filesystem, so
df inside shows the new size without a restart. The --size on the
container's hook lines is updated to match. Shrinking is refused.`

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
const ext4IocResizeFS = 0x40086610

func cmdResize(k Kind, args []string, stdout io.Writer) error {
	fs := flags(k, "resize", "NAME --size SIZE [-P LXCPATH]", resizeAbout, stdout)
	sizeFlag := fs.String("size", "", "new `SIZE`, with K, M, G or T (binary units)")
	lxcpath := fs.String("P", "", "`LXCPATH` (default: LXC's lxc.lxcpath)")
	fs.StringVar(lxcpath, "lxcpath", "", "same as -P")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if !k.Image {
		return fmt.Errorf("only lxc-hook-loopimg layers have a cap to resize")
	}
	if len(pos) != 1 || *sizeFlag == "" {
		return usageError{errors.New("give NAME and --size SIZE (see --help)")}
	}
	size, err := image.ParseSize(*sizeFlag)
	if err != nil {
		return err
	}
	if *lxcpath == "" {
		*lxcpath = defaultLXCPath()
	}
	c, err := loadContainer(*lxcpath, pos[0])
	if err != nil {
		return err
	}
	if c.Hook.Image == "" {
		return fmt.Errorf("container %q has no image layer", c.Name)
	}
	f, err := os.OpenFile(c.Hook.Image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	apparent, _, _, err := image.Usage(f)
	if err != nil {
		return err
	}
	if size < apparent {
		return fmt.Errorf("image %s is %s; shrinking to %s is refused (an ext4 layer is never shrunk)", c.Hook.Image, image.Human(apparent), image.Human(size))
	}
	if size == apparent {
		fmt.Fprintf(stdout, "%s is already %s\n", c.Name, image.Human(size))
		return updateSizeFlag(c, *sizeFlag)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	devs, err := loop.FindByBacking(uint64(st.Dev), st.Ino)
	if err != nil {
		return err
	}
	state, _ := c.info()
	switch {
	case len(devs) == 0 && state != "RUNNING":
		// Offline: the same lock the hook takes, so no start races us.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return fmt.Errorf("image %s is locked by a starting container; try again", c.Hook.Image)
		}
		if err := image.Grow(f, size, c.Hook.Preallocate); err != nil {
			return err
		}
	case len(devs) == 1 && state == "RUNNING":
		if err := growOnline(f, devs[0].Number, size, c.Hook.Preallocate); err != nil {
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (online resize needs CAP_SYS_RESOURCE)", err)
			}
			// The file may have grown already; the next start grows the
			// filesystem to match, so nothing is lost by stopping here.
			updateSizeFlag(c, *sizeFlag)
			return fmt.Errorf("%v; the image file is %s now and the filesystem is grown to fill it at the next start", err, image.Human(size))
		}
	case state == "RUNNING":
		return fmt.Errorf("container %s is running but its image %s has %d loop devices; refusing to guess", c.Name, c.Hook.Image, len(devs))
	default:
		return fmt.Errorf("container %s is %s but its image %s is still attached to %s; see %s release %s", c.Name, strings.ToLower(state), c.Hook.Image, devs[0].Path, k.Program, c.Name)
	}
	fmt.Fprintf(stdout, "%s grown from %s to %s\n", c.Name, image.Human(apparent), image.Human(size))
	return updateSizeFlag(c, *sizeFlag)
}

// growOnline grows a mounted image: the file, the loop device's capacity,
// then the filesystem through EXT4_IOC_RESIZE_FS. The filesystem is only
// mounted in the container's namespace (and detached from its tree there),
// so it is mounted once more, in a private mount namespace of one thread of
// this process: the kernel hands back the same superblock, and nothing is
// visible on the host.
func growOnline(f *os.File, number int, size int64, preallocate bool) error {
	if preallocate {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			return fmt.Errorf("growing %s: %w", f.Name(), err)
		}
	} else if err := f.Truncate(size); err != nil {
		return fmt.Errorf("growing %s: %w", f.Name(), err)
	}
	dev, err := loop.Open(number)
	if err != nil {
		return err
	}
	defer dev.Close()
	if err := dev.SetCapacity(); err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", dev.Path, err)
	}
	sb, err := image.ReadSuperblock(f)
	if err != nil {
		return err
	}
	blocks := uint64(size / sb.BlockSize)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
				return err
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return err
			}
			mp, err := os.MkdirTemp("", "lxc-hook-resize-")
			if err != nil {
				return err
			}
			defer os.Remove(mp)
			if err := mount.Block("ext4", dev.Path, mp, false); err != nil {
				return err
			}
			defer mount.Unmount(mp)
			d, err := os.Open(mp)
			if err != nil {
				return err
			}
			defer d.Close()
			if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
				return fmt.Errorf("EXT4_IOC_RESIZE_FS to %d blocks: %w", blocks, errno)
			}
			return nil
		}()
	}()
	return <-done
}

// updateSizeFlag rewrites "--size X" on the container's hook lines, so the
// next start does not warn that the image is larger than its --size.
func updateSizeFlag(c *container, size string) error {
	b, err := os.ReadFile(c.Config)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	changed := false
	for i, line := range lines {
		if !strings.HasPrefix(strings.TrimSpace(line), "lxc.hook.") {
			continue
		}
		words := strings.Split(line, " ")
		for j, w := range words {
			switch {
			case (w == "--size" || w == "-size") && j+1 < len(words):
				words[j+1] = size
			case strings.HasPrefix(w, "--size="):
				words[j] = "--size=" + size
			}
		}
		if nl := strings.Join(words, " "); nl != line {
			lines[i], changed = nl, true
		}
	}
	if !changed {
		return nil
	}
	tmp := c.Config + ".resize"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, c.Config)
}
