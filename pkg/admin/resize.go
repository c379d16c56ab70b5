package admin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/hook"
	"github.com/lxc-hooks/lxc-hooks/pkg/image"
	"github.com/lxc-hooks/lxc-hooks/pkg/loop"
	"github.com/lxc-hooks/lxc-hooks/pkg/mount"
	"github.com/lxc-hooks/lxc-hooks/pkg/progress"
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
	// Checked as a start checks it (package trust), and used through this
	// file only: e2fsck and resize2fs get it, not its name.
	f, err := image.Open(c.Hook.Image, os.O_RDWR)
	if errors.Is(err, os.ErrNotExist) {
		// Never started: the first start creates the image at --size.
		if err := updateSizeFlag(c, image.Human(size)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s has no image yet (%s); its first start creates it at %s\n", c.Name, c.Hook.Image, image.Human(size))
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	apparent, fsSize, err := sizes(f)
	if err != nil {
		return err
	}
	if size < apparent {
		return fmt.Errorf("image %s is %s; shrinking to %s is refused (an ext4 layer is never shrunk)", c.Hook.Image, image.Human(apparent), image.Human(size))
	}
	// Done only when the filesystem has the size, not just the file: an
	// online resize that failed half-way leaves a grown file around the
	// old filesystem, and df inside shows the filesystem.
	if size == apparent && fsSize >= size {
		fmt.Fprintf(stdout, "%s is already %s\n", c.Name, image.Human(size))
		return updateSizeFlag(c, image.Human(size))
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
	// failed reports what is true after a failure: the sizes as they are
	// now, the config left as it was, and how to finish.
	failed := func(err error, how string) error {
		a, fsz, serr := sizes(f)
		if serr != nil {
			return fmt.Errorf("%v; the config was not changed", err)
		}
		msg := fmt.Sprintf("%v; the config was not changed: the image file is %s and its filesystem %s", err, image.Human(a), image.Human(fsz))
		if a > fsz {
			msg += " (the next start grows the filesystem to fill the file)"
		}
		return errors.New(msg + "; " + how)
	}
	switch {
	case len(devs) == 0 && state != "RUNNING":
		// Offline: the same lock the hook takes, so no start races us.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return fmt.Errorf("image %s is locked by a starting container; try again", c.Hook.Image)
		}
		if err := image.GrowShowing(f, size, c.Hook.Preallocate, progress.New(stdout)); err != nil {
			how := "fix the cause above and run resize again"
			if errors.Is(err, unix.ENOSPC) {
				how = "free space on the host filesystem and run resize again"
			}
			return failed(err, how)
		}
	case len(devs) == 1 && state == "RUNNING":
		if !hasCapSysResource() {
			// ext4 refuses online growth with EPERM without it (as in some
			// sandboxes, even for root); find out before changing anything.
			return fmt.Errorf("online growth of a mounted ext4 needs CAP_SYS_RESOURCE, which this process does not have; nothing was changed: stop the container (lxc-stop -n %s) and run this resize again to grow it offline", hook.Quote(c.Name))
		}
		if err := growOnline(f, devs[0], size, c.Hook.Preallocate); err != nil {
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (online resize needs CAP_SYS_RESOURCE)", err)
			}
			return failed(err, fmt.Sprintf("stop the container (lxc-stop -n %s) and run this resize again to finish offline", hook.Quote(c.Name)))
		}
	case state == "RUNNING":
		return fmt.Errorf("container %s is running but its image %s has %d loop devices; refusing to guess", c.Name, c.Hook.Image, len(devs))
	default:
		return fmt.Errorf("container %s is %s but its image %s is still attached to %s; see %s release %s", c.Name, strings.ToLower(state), c.Hook.Image, devs[0].Path, k.Program, c.Name)
	}
	grown := size
	if state != "RUNNING" {
		// resize2fs wrote the superblock (a mounted ext4 writes its own
		// later, so after an online growth the ioctl's answer stands).
		if _, grown, err = sizes(f); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s grown from %s to %s\n", c.Name, image.Human(fsSize), image.Human(grown))
	return updateSizeFlag(c, image.Human(size))
}

// sizes reads the image file's size and its filesystem's.
func sizes(f *os.File) (file, fs int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	sb, err := image.ReadSuperblock(f)
	if err != nil {
		return 0, 0, fmt.Errorf("image %s: %w", f.Name(), err)
	}
	return fi.Size(), sb.Size(), nil
}

// hasCapSysResource reports whether this process may grow a mounted ext4
// (ext4_resize_begin checks capable(CAP_SYS_RESOURCE)).
func hasCapSysResource() bool {
	const capSysResource = 24
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true // cannot tell: let the kernel answer
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || mask&(1<<capSysResource) != 0
		}
	}
	return true
}

// growOnline grows a mounted image: the file, the loop device's capacity,
// then the filesystem through EXT4_IOC_RESIZE_FS. The filesystem is only
// mounted in the container's namespace (and detached from its tree there),
// so it is mounted once more, in a private mount namespace of one thread of
// this process: the kernel hands back the same superblock, and nothing is
// visible on the host.
func growOnline(f *os.File, found *loop.Status, size int64, preallocate bool) error {
	// The device was found by number a moment ago; the number alone names
	// nothing once its binding goes (the container stopped, another
	// device took the number). Open it, then make sure it is still bound
	// to this very file with the same disk sequence number: the open fd
	// keeps that binding until we close it.
	dev, err := loop.Open(found.Number)
	if err != nil {
		return err
	}
	defer dev.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	now, err := dev.Status()
	if err != nil || now.BackingDev != uint64(st.Dev) || now.BackingIno != st.Ino || now.Diskseq != found.Diskseq {
		return fmt.Errorf("%s is no longer the device of %s (the container stopped or restarted meanwhile); nothing was changed: run resize again", dev.Path, f.Name())
	}
	if preallocate {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			return fmt.Errorf("growing %s: %w", f.Name(), err)
		}
	} else if err := f.Truncate(size); err != nil {
		return fmt.Errorf("growing %s: %w", f.Name(), err)
	}
	if err := dev.SetCapacity(); err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", dev.Path, err)
	}
	sb, err := image.ReadSuperblock(f)
	if err != nil {
		return err
	}
	blocks := uint64(size / sb.BlockSize)
	return mount.InPrivateNamespace(func() error {
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
	})
}

// updateSizeFlag rewrites "--size X" on the container's lxc-hook-loopimg
// hook lines, so the next start does not warn that the image is larger
// than its --size. Each line is split the way sh splits it and written
// back quoted, so a line stays exactly the words it was with one changed.
func updateSizeFlag(c *container, size string) error {
	b, err := os.ReadFile(c.Config)
	if err != nil {
		return err
	}
	out, changed, err := rewriteSizeFlag(string(b), size)
	if err != nil {
		return fmt.Errorf("%s: %w; the config was not changed", c.Config, err)
	}
	if !changed {
		return nil
	}
	return replaceFile(c.Config, []byte(out))
}

// rewriteSizeFlag sets --size on every lxc-hook-loopimg hook line of a
// config text; other lines are left byte for byte.
func rewriteSizeFlag(config, size string) (string, bool, error) {
	lines := strings.Split(config, "\n")
	changed := false
	for i, line := range lines {
		key, val, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(strings.TrimSpace(key), "lxc.hook.") {
			continue
		}
		words, err := hook.SplitWords(strings.TrimSpace(val))
		if err != nil {
			if strings.Contains(val, "lxc-hook-loopimg") {
				return "", false, fmt.Errorf("%s: %w", strings.TrimSpace(line), err)
			}
			continue
		}
		if len(words) == 0 || filepath.Base(words[0]) != "lxc-hook-loopimg" {
			continue
		}
		edited := false
		for j := 1; j < len(words); j++ {
			w := words[j]
			switch {
			case (w == "--size" || w == "-size") && j+1 < len(words):
				words[j+1] = size
				edited = true
				j++
			case strings.HasPrefix(w, "--size=") || strings.HasPrefix(w, "-size="):
				words[j] = "--size=" + size
				edited = true
			case w == "--":
				j = len(words)
			}
		}
		if !edited {
			continue
		}
		if nl := key + "= " + hook.JoinWords(words); nl != line {
			lines[i], changed = nl, true
		}
	}
	return strings.Join(lines, "\n"), changed, nil
}

// replaceFile replaces the file at path with data, atomically: through a
// symlink to its target (a config kept elsewhere stays where it is), with
// the old file's mode and owner, under a temporary name of its own in the
// same directory, synced before the rename and the directory after it.
func replaceFile(path string, data []byte) error {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(target)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".resize-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name()) // our own temporary file
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	done = true
	if d, err := os.Open(filepath.Dir(target)); err == nil {
		d.Sync() // the rename survives a crash
		d.Close()
	}
	return nil
}
