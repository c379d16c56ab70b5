// Package clone copies a container's writable layer so that the copy is
// complete and independent: an image file keeps its holes (a reflink where
// the host filesystem shares extents, else only its data ranges), a layer
// directory keeps everything overlayfs wrote into it (numeric owners,
// modes, trusted.overlay.* xattrs of opaque and redirected directories,
// whiteouts as 0/0 character devices, hardlinks, holes, times).
//
// Both write under a temporary name in the destination's directory and
// rename at the end: a copy that fails half-way leaves no layer that a
// start would take for a good one.
package clone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lxc-hooks/lxc-hooks/pkg/execs"
	"github.com/lxc-hooks/lxc-hooks/pkg/killpoint"
)

// Progress is told the bytes copied so far and the total to copy.
type Progress func(done, total int64)

// tempName is the name a copy is written under before the rename.
func tempName(dst string) string {
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".copying."+strconv.Itoa(os.Getpid()))
}

// Image copies the image file src to dst, which must not exist. It tries
// FICLONE first (btrfs, xfs with reflink: instant, shares extents until
// either side writes); otherwise it copies the data ranges only, found
// with SEEK_DATA/SEEK_HOLE, with copy_file_range (in-kernel, no bounce
// through this process), so a 2G image with 30M written costs 30M of
// reads and writes and 30M on the host. It returns whether it reflinked.
// The source is the open file in (opened and checked by the caller: its
// name is not looked up again).
func Image(in *os.File, dst string, progress Progress) (reflinked bool, err error) {
	return ImageContext(context.Background(), in, dst, progress)
}

// ImageContext is Image stopped when ctx is done (between chunks of at
// most a few tens of MiB): the partial copy is removed and the error
// matches ctx's.
func ImageContext(ctx context.Context, in *os.File, dst string, progress Progress) (reflinked bool, err error) {
	src := in.Name()
	fi, err := in.Stat()
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("%q is not a regular file", src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return false, fmt.Errorf("%q already exists", dst)
	}
	tmp := tempName(dst)
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, fi.Mode().Perm())
	if err != nil {
		return false, err
	}
	ok := false
	defer func() {
		out.Close()
		if !ok {
			os.Remove(tmp) // our own temporary file
		}
	}()
	size := fi.Size()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		reflinked = true
		if progress != nil {
			progress(size, size)
		}
	} else {
		if err := out.Truncate(size); err != nil {
			return false, err
		}
		if err := copyData(ctx, in, out, size, progress); err != nil {
			return false, fmt.Errorf("copying %q: %w", src, err)
		}
	}
	if err := out.Sync(); err != nil {
		return false, err
	}
	if err := link(tmp, dst); err != nil {
		return false, err
	}
	ok = true
	return reflinked, nil
}

// dataRanges lists the [start, end) data extents of f.
func dataRanges(fd int, size int64) ([][2]int64, error) {
	var r [][2]int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if err != nil {
			return nil, err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		r = append(r, [2]int64{start, end})
		off = end
	}
	return r, nil
}

func copyData(ctx context.Context, in, out *os.File, size int64, progress Progress) error {
	ranges, err := dataRanges(int(in.Fd()), size)
	if err != nil {
		return err
	}
	var total, done int64
	for _, r := range ranges {
		total += r[1] - r[0]
	}
	last := time.Time{}
	halfway := false
	for _, r := range ranges {
		off := r[0]
		for off < r[1] {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !halfway && done >= total/2 && done > 0 {
				halfway = true
				killpoint.At("copy:image-halfway") // test-only
			}
			chunk := r[1] - off
			if chunk > 64<<20 {
				chunk = 64 << 20
			}
			roff, woff := off, off
			n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(chunk), 0)
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
				// Across filesystems on old kernels, or a filesystem
				// without it: plain reads and writes of the same range.
				var w int64
				w, err = io.Copy(io.NewOffsetWriter(out, off), io.NewSectionReader(in, off, chunk))
				n = int(w)
			}
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("copy stopped at offset %d of %d: the source shrank", off, size)
			}
			off += int64(n)
			done += int64(n)
			if progress != nil && time.Since(last) > 200*time.Millisecond {
				progress(done, total)
				last = time.Now()
			}
		}
	}
	if progress != nil {
		progress(done, total)
	}
	return nil
}

// link renames tmp to dst without replacing anything at dst.
func link(tmp, dst string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%q already exists", dst)
		}
		return fmt.Errorf("renaming %q to %q: %w", tmp, dst, err)
	}
	return nil
}

// CopyTimeout bounds cp: a layer of a few hundred GB still fits.
var CopyTimeout = 12 * time.Hour

// Tree copies the directory src to dst, which must not exist, with GNU cp
// -a --sparse=always, run as root: it keeps numeric owners, modes (setuid
// too), every xattr including trusted.overlay.* (opaque directories,
// redirects, origins, metacopy), whiteouts (0/0 character devices, made
// with mknod), hardlinks, holes, symlinks, and atime/mtime, set on
// directories after their contents (checked by this package's tests on
// an overlayfs upper). rsync -aHAXS --numeric-ids would do as well, but
// is not on every host; cp is.
func Tree(src, dst string) error { return TreeWith(context.Background(), src, dst, nil) }

// TreeShowing is Tree telling progress the bytes cp has read so far of
// the bytes of the regular files under src.
func TreeShowing(src, dst string, progress Progress) error {
	return TreeWith(context.Background(), src, dst, progress)
}

// TreeContext is Tree stopped (cp killed, the partial copy removed) when
// ctx is done; the error then matches ctx's.
func TreeContext(ctx context.Context, src, dst string) error { return TreeWith(ctx, src, dst, nil) }

// TreeWith is Tree stopped when ctx is done (see TreeContext) and telling
// progress what cp has read (see TreeShowing; nil: nothing is counted).
func TreeWith(ctx context.Context, src, dst string, progress Progress) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%q is not a directory", src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%q already exists", dst)
	}
	tmp := tempName(dst)
	o := execs.Options{Timeout: CopyTimeout, Hint: "install coreutils", Context: ctx}
	if progress != nil {
		// cp says nothing of its progress: what it has read, of the bytes
		// of the files to copy.
		total := treeBytes(src)
		o.ReadBytes = func(n int64) { progress(min(n, total), total) }
		progress(0, total) // the total from the start
	}
	if out, err := execs.RunWith(o, "cp", "-a", "--sparse=always", "--no-target-directory", src, tmp); err != nil {
		// cp made tmp itself: only a directory of our own temporary name
		// is removed, and nothing is mounted there.
		if rmErr := removeTemp(tmp); rmErr != nil {
			return fmt.Errorf("cp -a %s: %w: %s (and the partial copy %s could not be removed: %v)", src, err, out, tmp, rmErr)
		}
		return fmt.Errorf("cp -a %s: %w: %s", src, err, out)
	}
	return link(tmp, dst)
}

// treeBytes is the apparent size of the regular files under root (links
// not followed, unreadable parts left out: it only sizes a progress line).
func treeBytes(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// removeTemp removes a partial copy of our own temporary name, refusing
// anything with a mount below it (RemoveAll would cross into it).
func removeTemp(tmp string) error {
	var st unix.Stat_t
	if err := unix.Lstat(tmp, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	dev := st.Dev
	var mounted error
	filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			var s unix.Stat_t
			if unix.Lstat(p, &s) == nil && s.Dev != dev {
				mounted = fmt.Errorf("%q is a mountpoint", p)
				return filepath.SkipAll
			}
		}
		return nil
	})
	if mounted != nil {
		return mounted
	}
	return os.RemoveAll(tmp)
}

// File copies one regular file or symlink with cp -a (owner, mode,
// xattrs, times).
func File(src, dst string) error {
	if out, err := execs.Run(CopyTimeout, "install coreutils", "cp", "-a", "--sparse=always", "--no-target-directory", src, dst); err != nil {
		return fmt.Errorf("cp -a %s: %v: %s", src, err, out)
	}
	return nil
}

// RemoveFresh removes a directory this process just created and filled,
// refusing if anything is mounted below it.
func RemoveFresh(dir string) error { return removeTemp(dir) }
